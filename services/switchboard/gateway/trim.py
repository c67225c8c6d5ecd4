"""Trimming acked events from outboxes, after folding them into the agent's stored desk view.

The fold-then-trim is a compare-and-set on the view's `through` seq, so two replicas trimming the same outbox
(a desktop moving between replicas) never move the view backwards or trim what was not folded.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from redis.asyncio import Redis
from redis.exceptions import RedisError

from switchboard.gateway.metrics import TRIMS
from switchboard.gateway.settings import GatewaySettings
from switchboard.gateway.view import DeskView, fold
from switchboard.runtime.logs import get_logger
from switchboard.runtime.lua import LuaScript
from switchboard.state.keys import Keys
from switchboard.state.outbox import read_outbox

if TYPE_CHECKING:
    from switchboard.gateway.session import DeskSession

log = get_logger(__name__)

FOLD_AND_TRIM = LuaScript.load(__file__, "fold_and_trim")


async def read_view(redis: Redis, keys: Keys, tenant_id: str, agent_id: str) -> DeskView:
    """The stored desk view of an agent (empty when none was stored yet)."""
    raw = await redis.hget(keys.desk_view(tenant_id, agent_id), "view")
    return DeskView.from_json(raw)


async def fold_and_trim(
    redis: Redis, keys: Keys, tenant_id: str, agent_id: str, through: int, keep_messages: int
) -> bool:
    """Fold outbox events up to `through` into the stored view and trim them; False when another replica won."""
    view = await read_view(redis, keys, tenant_id, agent_id)
    if through <= view.through_seq:
        return True
    expected = view.through_seq
    while view.through_seq < through:
        events = await read_outbox(redis, keys, tenant_id, agent_id, view.through_seq, count=500)
        events = [e for e in events if e.seq <= through]
        if not events:
            break
        fold(view, events, keep_messages)
    if view.through_seq == expected:
        return True
    done = await FOLD_AND_TRIM(
        redis,
        keys=[keys.desk_view(tenant_id, agent_id), keys.desk_outbox(tenant_id, agent_id)],
        args=[expected, view.through_seq, view.to_json(), f"{view.through_seq + 1}-0"],
    )
    if done:
        TRIMS.inc()
    return bool(done)


class Trimmer:
    """Trims outboxes of sessions whose acks moved on, one at a time, off the delivery path."""

    def __init__(self, redis: Redis, keys: Keys, settings: GatewaySettings) -> None:
        self.redis = redis
        self.keys = keys
        self.settings = settings
        self._due: dict[tuple[str, str], int] = {}
        self._wake = asyncio.Event()
        self._stopping = False

    def request(self, session: DeskSession, final: bool = False) -> None:
        """Trim this session's outbox up to its ack minus the margin, soon."""
        through = session.acked - self.settings.trim_margin
        if through <= 0 or (final and session.acked == session.trim_requested):
            return
        session.trim_requested = session.acked
        self._due[session.key] = max(through, self._due.get(session.key, 0))
        self._wake.set()

    def stop(self) -> None:
        """Finish the due trims, then return from `run`."""
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        """Work off due trims until stopped."""
        while not self._stopping or self._due:
            await self._wake.wait()
            self._wake.clear()
            while self._due:
                key = next(iter(self._due))
                through = self._due.pop(key)
                try:
                    await fold_and_trim(self.redis, self.keys, key[0], key[1], through, self.settings.snapshot_messages)
                except (RedisError, OSError) as exc:
                    log.warning("outbox_trim_failed", tenant_id=key[0], agent_id=key[1], error=repr(exc))
