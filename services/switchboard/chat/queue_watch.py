"""Live queue positions for waiting customers, read from the router's own queue in Redis.

The router says a conversation's position once, in its QUEUED decision; as the conversations ahead are taken,
nobody tells the customer. So every `interval_s` each replica looks up, for the customers whose sockets it holds,
whether their open conversation is queued and where (the router's conversation hash `state`/`group` and its
per-channel queue, lowest score first), and pushes a `queue` frame when the position changed. Read-only: the
router stays the only writer of its keys. Each round is three pipelined reads for all customers at once (open
conversation, its state and group, its rank); they are not one snapshot, and need not be: a position shown is an
estimate that the next round corrects.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from switchboard.chat.frames import queue_frame
from switchboard.chat.sockets import SocketHub
from switchboard.runtime.logs import get_logger
from switchboard.state.keys import Keys

log = get_logger(__name__)


class QueueWatch:
    """Pushes changed queue positions to this replica's waiting customers."""

    def __init__(
        self, hub: SocketHub, redis: Redis, keys: Keys, seconds_per_position: float, interval_s: float
    ) -> None:
        self._hub = hub
        self._keys = keys
        self._seconds_per_position = seconds_per_position
        self._interval_s = interval_s
        self._redis = redis
        self._shown: dict[tuple[str, str], tuple[str, int]] = {}
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
        customers = sorted(self._hub.customers())
        self._shown = {who: shown for who, shown in self._shown.items() if who in customers}
        for who, (conversation_id, position) in zip(customers, await self.positions(customers), strict=True):
            if position <= 0:
                self._shown.pop(who, None)
            elif self._shown.get(who) != (conversation_id, position):
                self._shown[who] = (conversation_id, position)
                frame = queue_frame(conversation_id, position, self._seconds_per_position)
                self._hub.push_local(who[0], who[1], frame)

    async def positions(self, customers: Sequence[tuple[str, str]]) -> list[tuple[str, int]]:
        """Each (tenant, customer)'s open conversation and its place in its chat queue (0 when not queued)."""
        k = self._keys
        conversations = [_text(c) for c in await self._read([("GET", k.chat_conversation(*who)) for who in customers])]
        open_ones = [(tenant, conv) for (tenant, _), conv in zip(customers, conversations, strict=True) if conv]
        fields = await self._read([("HMGET", k.conversation(*one), "state", "group") for one in open_ones])
        queued = {
            one: _text(group)
            for one, (state, group) in zip(open_ones, fields, strict=True)
            if _text(state) == "queued" and group
        }
        ranks = await self._read([("ZRANK", k.queue_channel(t, g, "chat"), c) for (t, c), g in queued.items()])
        place = {one: int(rank) + 1 for one, rank in zip(queued, ranks, strict=True) if rank is not None}
        return [
            (conv, place.get((tenant, conv), 0)) for (tenant, _), conv in zip(customers, conversations, strict=True)
        ]

    async def _read(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Read commands in one non-transactional pipeline (one round trip per node on a cluster)."""
        if not commands:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for name, *args in commands:
            pipe.execute_command(name, *args)
        return list(await pipe.execute())


def _text(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else (value or "")
