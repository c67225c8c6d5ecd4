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
from switchboard.router.drain import drain_groups
from switchboard.router.inbound import InboundHandler
from switchboard.router.rebuild import RouterRebuild
from switchboard.router.reload import ConfigStore
from switchboard.router.settings import BotSettings
from switchboard.router.upkeep import Upkeep
from switchboard.runtime.logs import get_logger
from switchboard.state.keys import Keys
from switchboard.state.marks import StateMarks

log = get_logger(__name__)

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
        rebuild: RouterRebuild | None = None,
    ) -> None:
        """With `rebuild`, the router checks its state mark of each tenant (service "router") and rebuilds the
        tenant's state from the topics when Redis lost it, before it handles anything of the tenant."""
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
        self._rebuild = rebuild
        if rebuild is not None:
            self.context.marks = StateMarks(redis, keys, "router", instance)
            self.context.rebuild = self._rebuild_tenant
            self.context.rebuilt = self._after_rebuild

    async def _rebuild_tenant(self, tenant: str) -> None:
        """Publish the tenant's unsent decisions first (after a partial loss Redis may hold decisions the routing
        topic does not have yet), then rebuild from the topics."""
        config = self.context.configs.get(tenant)
        if config is not None:
            await self.upkeep.resend_all(config)
        if self._rebuild is not None:
            await self._rebuild(tenant)

    async def _after_rebuild(self, tenant: str) -> None:
        """Once a tenant's state is back: publish the re-assignments the rebuild made (its owners' new epochs),
        route what had no decision yet, and drain every group at once (agents with room take the queued
        conversations now, not at the next sweep)."""
        config = self.context.configs.get(tenant)
        if config is not None:
            await self.upkeep.resend_all(config)
        orphans = self._rebuild.orphans.pop(tenant, []) if self._rebuild is not None else []
        if orphans:
            for message, reason in await self.inbound.handle(orphans):
                log.warning("rebuild_orphan_refused", tenant=tenant, message=message.message_id, reason=reason)
        if config is not None:
            await drain_groups(self.context, config, sorted(g.name for g in config.skill_groups), self.context.clock())

    async def handle_inbound(self, messages: Sequence[InboundMessage]) -> list[tuple[InboundMessage, str]]:
        """Route a batch of inbound messages in order; return those refused, with the reason."""
        return await self.inbound.handle(messages)

    async def handle_commands(self, commands: Sequence[AgentCommand]) -> list[tuple[AgentCommand, str]]:
        """Apply agents' commands in order; return those refused as bad input, with the reason."""
        return await self.commands.handle(commands)
