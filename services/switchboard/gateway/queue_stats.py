"""Queue stats of the skill groups of the agents connected to this replica, pushed as ephemeral `queue_stats` frames.

Every `SB_QUEUE_STATS_INTERVAL_S` the replica reads, for each (tenant, group) that one of its agents belongs to,
the group's queue depth per channel, the longest wait at the head of its queues and how many of its agents are
available, in a few pipelined Redis round trips, read-only. Each (tenant, group) is computed once and its frame is
built once; the same string is then queued to every socket of that group. A socket gets a group's frame when the
figures changed since the last tick, or when the socket (or its group list) is new to the broadcaster.

The frames have no seq and do not go through the outbox: they are superseded by the next tick, a reconnect gets
fresh ones within an interval, and a desktop that is behind on its events simply skips one (see
DeskSession.offer_ephemeral).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from switchboard.gateway.hub import DeskHub
from switchboard.gateway.metrics import QUEUE_STATS_FRAMES
from switchboard.gateway.session import DeskSession
from switchboard.gateway.settings import GatewaySettings
from switchboard.presence.roster import CHANNELS
from switchboard.runtime.keys import Keys
from switchboard.runtime.logs import get_logger

log = get_logger(__name__)

TenantGroup = tuple[str, str]
_CHUNK = 1000  # commands per pipelined round trip


@dataclass(frozen=True, slots=True)
class GroupQueue:
    """One skill group's queue as a desktop sees it."""

    waiting: dict[str, int]
    oldest_wait_s: int
    available_agents: int


def parse_groups(value: bytes | str | None) -> tuple[str, ...]:
    """The agent hash's comma-separated `groups` field as a tuple (empty when unset)."""
    if value is None:
        return ()
    text = value.decode() if isinstance(value, bytes) else value
    return tuple(sorted({g.strip() for g in text.split(",") if g.strip()}))


def oldest_wait_s(now_ms: int, enqueued_ms: Iterable[bytes | str | None]) -> int:
    """Seconds the longest-waiting of these conversations has waited (0 when none); unparsable times are skipped."""
    oldest = 0
    for value in enqueued_ms:
        try:
            since = int(value) if value is not None else None
        except ValueError:
            since = None
        if since is not None:
            oldest = max(oldest, now_ms - since)
    return oldest // 1000


def group_queue(
    depths: Sequence[int], head_enqueued_ms: Sequence[bytes | None], statuses: Sequence[bytes | None], now_ms: int
) -> GroupQueue:
    """A group's figures from what Redis answered: ZCARD per channel (CHANNELS order), the `enqueued_ms` of the
    conversations at the head of its queues, and the `status` of each of its agents."""
    return GroupQueue(
        waiting=dict(zip(CHANNELS, (int(d) for d in depths), strict=True)),
        oldest_wait_s=oldest_wait_s(now_ms, head_enqueued_ms),
        available_agents=sum(1 for s in statuses if s == b"available"),
    )


def stats_frame(group: str, stats: GroupQueue) -> str:
    """The text of a `queue_stats` frame (no seq: ephemeral)."""
    frame = {
        "type": "queue_stats",
        "skill_group": group,
        "waiting": sum(stats.waiting.values()),
        "waiting_by_channel": stats.waiting,
        "oldest_wait_s": stats.oldest_wait_s,
        "available_agents": stats.available_agents,
    }
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":"))


async def _pipelined(redis: Redis, commands: list[tuple[Any, ...]]) -> list[Any]:
    """Run read commands in pipelined chunks; the answers in order."""
    answers: list[Any] = []
    for start in range(0, len(commands), _CHUNK):
        pipe = redis.pipeline(transaction=False)
        for name, *args in commands[start : start + _CHUNK]:
            pipe.execute_command(name, *args)
        answers.extend(await pipe.execute())
    return answers


class QueueStatsBroadcaster:
    """The replica's periodic queue stats: read per (tenant, group), fan out to the group's sockets here."""

    def __init__(self, redis: Redis, keys: Keys, hub: DeskHub, settings: GatewaySettings) -> None:
        self.redis = redis
        self.keys = keys
        self.hub = hub
        self.settings = settings
        self._groups: dict[DeskSession, tuple[str, ...]] = {}
        self._frames: dict[TenantGroup, str] = {}
        self._groups_read_at = 0.0

    async def run(self) -> None:
        """Tick every interval until the hub stops; a Redis error skips a tick."""
        interval = self.settings.queue_stats_interval_s
        if interval <= 0:
            return
        stopping = self.hub.stopping
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), interval)
            if stopping.is_set():
                return
            try:
                await self.tick(int(time.time() * 1000), time.monotonic())
            except (RedisError, OSError) as exc:
                log.warning("queue_stats_failed", error=repr(exc))

    async def tick(self, now_ms: int, now: float) -> int:
        """Read and send one round of stats; how many frames were queued."""
        sessions = [s for s in self.hub.sessions.values() if not s.closed]
        fresh = await self._refresh_groups(sessions, now)
        pairs = sorted({(s.tenant_id, g) for s in sessions for g in self._groups.get(s, ())})
        stats = await self._read(pairs, now_ms)
        changed = set()
        for pair, figures in stats.items():
            frame = stats_frame(pair[1], figures)
            if self._frames.get(pair) != frame:
                self._frames[pair] = frame
                changed.add(pair)
        for pair in set(self._frames) - set(stats):
            del self._frames[pair]
        return self._fan_out(sessions, fresh, changed)

    def _fan_out(self, sessions: list[DeskSession], fresh: set[DeskSession], changed: set[TenantGroup]) -> int:
        sent = 0
        for session in sessions:
            for group in self._groups.get(session, ()):
                pair = (session.tenant_id, group)
                if (session in fresh or pair in changed) and session.offer_ephemeral(self._frames[pair]):
                    sent += 1
        QUEUE_STATS_FRAMES.inc(sent)
        return sent

    async def _refresh_groups(self, sessions: list[DeskSession], now: float) -> set[DeskSession]:
        """Know every session's groups: new sessions each tick, all of them every `queue_stats_groups_refresh_s`
        (operators change groups live). Returns the sessions whose group list is new (they get every frame)."""
        live = set(sessions)
        for gone in [s for s in self._groups if s not in live]:
            del self._groups[gone]
        every = now - self._groups_read_at >= self.settings.queue_stats_groups_refresh_s
        todo = sessions if every else [s for s in sessions if s not in self._groups]
        if every:
            self._groups_read_at = now
        if not todo:
            return set()
        values = await _pipelined(
            self.redis, [("HGET", self.keys.agent(s.tenant_id, s.agent_id), "groups") for s in todo]
        )
        fresh = set()
        for session, value in zip(todo, values, strict=True):
            groups = parse_groups(value)
            if self._groups.get(session) != groups:
                fresh.add(session)
            self._groups[session] = groups
        return fresh

    async def _read(self, pairs: list[TenantGroup], now_ms: int) -> dict[TenantGroup, GroupQueue]:
        """Two pipelined passes: members, depths and queue heads per group; then statuses and enqueue times."""
        if not pairs:
            return {}
        head = self.settings.queue_stats_head
        first: list[tuple[Any, ...]] = []
        for tenant, group in pairs:
            first.append(("SMEMBERS", self.keys.group_agents(tenant, group)))
            for channel in CHANNELS:
                queue = self.keys.queue_channel(tenant, group, channel)
                first += [("ZCARD", queue), ("ZRANGE", queue, 0, head - 1)]
        answers = await _pipelined(self.redis, first)
        step = 1 + 2 * len(CHANNELS)
        second: list[tuple[Any, ...]] = []
        shapes = []
        for i, (tenant, _group) in enumerate(pairs):
            part = answers[i * step : (i + 1) * step]
            members = sorted(m.decode() for m in part[0])
            heads = [c.decode() for ids in part[2::2] for c in ids]
            second += [("HGET", self.keys.agent(tenant, m), "status") for m in members]
            second += [("HGET", self.keys.conversation(tenant, c), "enqueued_ms") for c in heads]
            shapes.append(([int(d) for d in part[1::2]], len(members), len(heads)))
        values = await _pipelined(self.redis, second)
        result: dict[TenantGroup, GroupQueue] = {}
        at = 0
        for pair, (depths, n_members, n_heads) in zip(pairs, shapes, strict=True):
            statuses = values[at : at + n_members]
            enqueued = values[at + n_members : at + n_members + n_heads]
            at += n_members + n_heads
            result[pair] = group_queue(depths, enqueued, statuses, now_ms)
        return result
