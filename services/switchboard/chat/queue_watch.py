"""Live queue positions and estimated waits for waiting chat customers, read from the router's state in Redis.

The router says a conversation's position once, in its QUEUED decision; as the conversations ahead are taken,
nobody tells the customer. So every `interval_s` each replica looks up, for the customers whose sockets it holds,
whether their open conversation is queued and where (`state.waiting.places_of`: the router's conversation hash
and its per-channel queue), with the wait the router estimates for that group's chat queue (`state.figures`), and
pushes a `queue` frame when the position changed or the estimate moved by `wait_change_s`. Read-only: the router
stays the only writer of its keys. A place shown is an estimate that the next round corrects.

Whether a tenant's customers get frames at all is `QueueFrames.tenants_on`: always (`chat_queue_frames_always`,
the default, as before surge profiles), else only while the surge profile in force has `customer_updates.chat`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from switchboard.chat.frames import queue_frame
from switchboard.chat.sockets import SocketHub
from switchboard.runtime.logs import get_logger
from switchboard.state.figures import read_estimate
from switchboard.state.keys import Keys
from switchboard.state.waiting import places_of, told_wait_s, updates_on

log = get_logger(__name__)


class QueueFrames:
    """What a waiting chat customer is told, and whether: one rule for routing decisions and the watch."""

    def __init__(self, redis: Redis, keys: Keys, *, always: bool, fallback_s_per_position: float) -> None:
        self.redis = redis
        self.keys = keys
        self.always = always
        self.fallback_s_per_position = fallback_s_per_position

    async def tenants_on(self, tenants: Iterable[str]) -> set[str]:
        """The tenants whose waiting chat customers get `queue` frames now."""
        wanted = set(tenants)
        if self.always:
            return wanted
        return {t for t in wanted if await updates_on(self.redis, self.keys, t, "chat")}

    async def decided(self, tenant_id: str, conversation_id: str, group: str, position: int) -> dict[str, Any] | None:
        """The frame for a QUEUED/REQUEUED decision at `position` of `group`'s chat queue (None when off)."""
        if tenant_id not in await self.tenants_on([tenant_id]):
            return None
        estimate = await read_estimate(self.redis, self.keys, tenant_id, group, "chat") if group else None
        wait = told_wait_s(estimate, position, self.fallback_s_per_position)
        return queue_frame(conversation_id, position, wait)


class QueueWatch:
    """Pushes changed queue positions and estimates to this replica's waiting customers."""

    def __init__(self, hub: SocketHub, frames: QueueFrames, *, interval_s: float, wait_change_s: float) -> None:
        self._hub = hub
        self._frames = frames
        self._interval_s = interval_s
        self._wait_change_s = wait_change_s
        # (tenant, customer) -> (conversation, position, estimated wait) last pushed.
        self._shown: dict[tuple[str, str], tuple[str, int, int]] = {}
        self._stopping = asyncio.Event()

    def stop_intake(self) -> None:
        """Stop after the current round."""
        self._stopping.set()

    async def run(self) -> None:
        """Look up positions every interval until stopped."""
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval_s)
                return
            try:
                await self.refresh()
            except (RedisError, OSError) as exc:
                log.warning("chat_queue_watch_failed", error=repr(exc))

    async def refresh(self) -> None:
        """One round over the customers with a socket here."""
        on = await self._frames.tenants_on({tenant for tenant, _ in self._hub.customers()})
        customers = sorted(who for who in self._hub.customers() if who[0] in on)
        self._shown = {who: shown for who, shown in self._shown.items() if who in customers}
        for who, place in zip(customers, await self.places(customers), strict=True):
            if place is None:
                self._shown.pop(who, None)
                continue
            conversation_id, position, wait = place
            if self._changed(self._shown.get(who), place):
                self._shown[who] = place
                self._hub.push_local(who[0], who[1], queue_frame(conversation_id, position, wait))

    def _changed(self, shown: tuple[str, int, int] | None, place: tuple[str, int, int]) -> bool:
        if shown is None or shown[:2] != place[:2]:
            return True
        return abs(shown[2] - place[2]) >= self._wait_change_s

    async def places(self, customers: list[tuple[str, str]]) -> list[tuple[str, int, int] | None]:
        """Each (tenant, customer)'s open conversation, its place in its chat queue and the estimated wait (None
        when the customer has no open conversation or it is not queued)."""
        redis, keys = self._frames.redis, self._frames.keys
        pipe = redis.pipeline(transaction=False)
        for tenant, customer in customers:
            pipe.get(keys.chat_conversation(tenant, customer))
        conversations = [_text(c) for c in await pipe.execute()] if customers else []
        open_ones = [(tenant, conv) for (tenant, _), conv in zip(customers, conversations, strict=True) if conv]
        found = await places_of(redis, keys, open_ones, self._frames.fallback_s_per_position)
        by_conversation = {
            one: (p.conversation_id, p.position, p.estimated_wait_s)
            for one, p in zip(open_ones, found, strict=True)
            if p is not None and p.channel == "chat"
        }
        return [by_conversation.get((tenant, conv)) for (tenant, _), conv in zip(customers, conversations, strict=True)]


def _text(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else (value or "")
