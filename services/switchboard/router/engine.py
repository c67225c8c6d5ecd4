"""The router: its handlers (inbound, commands, upkeep) over one shared context.

    router = Router(redis, keys, configs, sink)
    await router.handle_inbound(messages)     # router/inbound.py
    await router.handle_commands(commands)    # router/commands.py
    await router.upkeep.handle_presence(records); await router.upkeep.sweep()   # router/upkeep.py

Routing rules live in `switchboard.routing`; the scripts in router/lua/ apply plans atomically.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from redis.asyncio import Redis

from switchboard.contracts import AgentCommand, InboundMessage
from switchboard.router.bot import BotAnswers
from switchboard.router.bot_lookup import OrderLookup
from switchboard.router.commands import CommandHandler
from switchboard.router.context import EventSink, MemorySink, RouterContext
from switchboard.router.inbound import InboundHandler
from switchboard.router.reload import ConfigStore
from switchboard.router.settings import BotSettings
from switchboard.router.upkeep import Upkeep
from switchboard.state.keys import Keys

__all__ = ["EventSink", "MemorySink", "Router"]


class Router:
    """Routing decisions of one router process; any number of processes may share a tenant."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        configs: ConfigStore,
        sink: EventSink,
        *,
        instance: str = "router",
        marker_ttl_s: int = 7 * 24 * 3600,
        snapshot_ttl_s: float = 0.0,
        clock: Callable[[], int] | None = None,
        bot: BotSettings | None = None,
    ) -> None:
        self.context = RouterContext(
            redis,
            keys,
            configs,
            sink,
            instance=instance,
            marker_ttl_s=marker_ttl_s,
            snapshot_ttl_s=snapshot_ttl_s,
            clock=clock or (lambda: int(time.time() * 1000)),
        )
        bot = bot or BotSettings()
        lookup = OrderLookup(failures=bot.breaker_failures, cooldown_s=bot.breaker_cooldown_s)
        self.bot = BotAnswers(self.context, lookup, bot.order_lookup_url)
        self.inbound = InboundHandler(self.context, bot=self.bot)
        self.commands = CommandHandler(self.context)
        self.upkeep = Upkeep(self.context, bot=self.bot)

    async def handle_inbound(self, messages: Sequence[InboundMessage]) -> list[tuple[InboundMessage, str]]:
        """Route a batch of inbound messages in order; return those refused, with the reason."""
        return await self.inbound.handle(messages)

    async def handle_commands(self, commands: Sequence[AgentCommand]) -> list[tuple[AgentCommand, str]]:
        """Apply agents' commands in order; return those refused as bad input, with the reason."""
        return await self.commands.handle(commands)
