"""Queue stats of the skill groups of the agents connected to this replica, pushed as ephemeral `queue_stats` frames.

Every `SB_QUEUE_STATS_INTERVAL_S` the replica reads, for each (tenant, group) that one of its agents belongs to,
the group's queue depth per channel, the longest wait at the head of its queues and how many of its agents are
available: its members and queue heads, then one read-only script call per group, each round pipelined. Each
(tenant, group) is computed once and its frame is built once; the same string is then queued to every socket of
that group. A socket gets a group's frame when the
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
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from switchboard.gateway.hub import DeskHub
from switchboard.gateway.metrics import QUEUE_STATS_FRAMES
from switchboard.gateway.responses import ResponseTargets
from switchboard.gateway.session import DeskSession
from switchboard.gateway.settings import GatewaySettings
from switchboard.runtime.logs import get_logger
from switchboard.runtime.lua import LuaScript, ScriptCall, lua_file, run_pipelined
from switchboard.state.keys import Keys
from switchboard.state.roster import CHANNELS

log = get_logger(__name__)

TenantGroup = tuple[str, str]
_CHUNK = 1000  # commands per pipelined round trip

# Two pipelined rounds per tick: the groups' members and queue heads, then one read-only script per group over
# exactly those agent and conversation keys (declared in KEYS, so it runs on a cluster too). The two rounds are
# not one snapshot; the figures are a tick's estimate either way.
# The oldest enqueue time per channel: one Lua function for both scripts below.
OLDEST_LUA = lua_file(__file__, "oldest")
QUEUE_STATS = LuaScript.load(__file__, "queue_stats", libs=(OLDEST_LUA,))


@dataclass(frozen=True, slots=True)
class GroupQueue:
    """One skill group's queue as a desktop sees it: waiting per channel, the longest wait (over every channel and
    per channel) and its available agents."""

    waiting: dict[str, int]
    oldest_wait_s: int
    available_agents: int
    oldest_wait_by_channel: dict[str, int] = field(default_factory=dict)


def parse_groups(value: bytes | str | None) -> tuple[str, ...]:
    """The agent hash's comma-separated `groups` field as a tuple (empty when unset)."""
    if value is None:
        return ()
    text = value.decode() if isinstance(value, bytes) else value
    return tuple(sorted({g.strip() for g in text.split(",") if g.strip()}))


def _wait_s(oldest_ms: int, now_ms: int) -> int:
    return max(0, now_ms - oldest_ms) // 1000 if oldest_ms else 0


def group_queue(available: int, oldest_ms: Sequence[int], depths: Sequence[int], now_ms: int) -> GroupQueue:
    """A group's figures from its available agents, the oldest enqueued_ms at the head of each channel's queue
    (0: none) and each channel's depth, both in CHANNELS order."""
    by_channel = {ch: _wait_s(int(at), now_ms) for ch, at in zip(CHANNELS, oldest_ms, strict=True)}
    return GroupQueue(
        waiting={ch: int(depth) for ch, depth in zip(CHANNELS, depths, strict=True)},
        oldest_wait_s=max(by_channel.values()),
        available_agents=int(available),
        oldest_wait_by_channel=by_channel,
    )


def stats_frame(group: str, stats: GroupQueue, response_target_s: float | None = None) -> str:
    """The text of a `queue_stats` frame (no seq: ephemeral), with the group's response target in force when known
    (the desk's timer follows a surge profile switched on or off)."""
    frame: dict[str, Any] = {
        "type": "queue_stats",
        "skill_group": group,
        "waiting": sum(stats.waiting.values()),
        "waiting_by_channel": stats.waiting,
        "oldest_wait_s": stats.oldest_wait_s,
        "available_agents": stats.available_agents,
    }
    if response_target_s is not None:
        frame["response_target_s"] = response_target_s
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

    def __init__(
        self, redis: Redis, keys: Keys, hub: DeskHub, settings: GatewaySettings, targets: ResponseTargets | None = None
    ) -> None:
        self.redis = redis
        self.targets = targets
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
        in_force = {}
        if self.targets is not None:
            for tenant in sorted({t for t, _ in pairs}):
                in_force[tenant] = await self.targets.in_force(tenant)
        changed = set()
        for pair, figures in stats.items():
            targets = in_force.get(pair[0])
            frame = stats_frame(pair[1], figures, targets.target(pair[1]) if targets else None)
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
        """Members and queue heads of every (tenant, group), then one script call per group, pipelined."""
        heads = await read_group_heads(self.redis, self.keys, pairs, self.settings.queue_stats_head)
        calls = [ScriptCall(QUEUE_STATS, keys=h.keys(), args=h.args()) for h in heads]
        result: dict[TenantGroup, GroupQueue] = {}
        for start in range(0, len(calls), _CHUNK):
            chunk = range(start, min(start + _CHUNK, len(calls)))
            answered = await run_pipelined(self.redis, [calls[i] for i in chunk])
            for i, (available, *oldest) in zip(chunk, answered, strict=True):
                result[pairs[i]] = group_queue(available, oldest, heads[i].depths, now_ms)
        return result


@dataclass(frozen=True, slots=True)
class GroupHeads:
    """What the first round reads of one group: its agent hashes, the conversations at its queue heads (channel
    after channel), how many of them each channel has, and the depth of each channel queue (CHANNELS order)."""

    agents: list[str]
    conversations: list[str]
    depths: list[int]
    heads: list[int]

    def keys(self) -> list[str]:
        """KEYS of the group's script: the agents, then the head conversations."""
        return [*self.agents, *self.conversations]

    def args(self) -> list[int]:
        """ARGV of the group's script: the agent count, then the head conversations per channel."""
        return [len(self.agents), *self.heads]


async def read_group_heads(redis: Redis, keys: Keys, pairs: Sequence[TenantGroup], head: int) -> list[GroupHeads]:
    """Members, queue depths and the first `head` conversations of each channel queue of every (tenant, group),
    pipelined; the scripts that follow read exactly these keys (declared, so they run on a cluster too)."""
    commands: list[tuple[Any, ...]] = []
    for tenant, group in pairs:
        commands.append(("SMEMBERS", keys.group_agents(tenant, group)))
        for channel in CHANNELS:
            queue = keys.queue_channel(tenant, group, channel)
            commands += [("ZCARD", queue), ("ZRANGE", queue, 0, head - 1)]
    answers = iter(await _pipelined(redis, commands))
    found = []
    for tenant, _group in pairs:
        members = sorted(next(answers))
        depths, conversations, counts = [], [], []
        for _channel in CHANNELS:
            depths.append(int(next(answers)))
            head_ids = next(answers)
            counts.append(len(head_ids))
            conversations += [keys.conversation(tenant, c.decode()) for c in head_ids]
        found.append(GroupHeads([keys.agent(tenant, m.decode()) for m in members], conversations, depths, counts))
    return found


# The supervisor board's read of one group: the same first round, then every member's status and slots.
GROUP_BOARD = LuaScript.load(__file__, "group_board", libs=(OLDEST_LUA,))

BOARD_STATUSES = ("available", "busy", "away", "wrap_up", "offline")


@dataclass(frozen=True, slots=True)
class GroupBoard:
    """One skill group as the supervisor board shows it: its queue (as desktops see it) and its agents."""

    queue: GroupQueue
    agents_by_status: dict[str, int]
    used_slots: int
    slots: int

    @property
    def occupancy(self) -> float:
        """Used over effective slots of the group's agents who are not offline (0 when none)."""
        return round(self.used_slots / self.slots, 3) if self.slots else 0.0


def group_board(answer: Sequence[int], depths: Sequence[int], now_ms: int) -> GroupBoard:
    """A group's board figures from GROUP_BOARD's answer [oldest enqueued_ms per channel, agents per
    BOARD_STATUSES, used slots, effective slots] and the depth of each channel's queue (CHANNELS order)."""
    values = [int(v) for v in answer]
    n = len(CHANNELS)
    oldest_ms, by_status, (used, slots) = values[:n], values[n : n + 5], values[n + 5 : n + 7]
    statuses = dict(zip(BOARD_STATUSES, by_status, strict=True))
    queue = group_queue(statuses["available"], oldest_ms, depths, now_ms)
    return GroupBoard(queue=queue, agents_by_status=statuses, used_slots=used, slots=slots)


async def read_group_boards(
    redis: Redis, keys: Keys, pairs: Sequence[TenantGroup], now_ms: int, head: int
) -> dict[TenantGroup, GroupBoard]:
    """The board figures of each (tenant, group): the queue stats' first round, then one GROUP_BOARD call each."""
    heads = await read_group_heads(redis, keys, pairs, head)
    calls = [ScriptCall(GROUP_BOARD, keys=h.keys(), args=h.args()) for h in heads]
    result: dict[TenantGroup, GroupBoard] = {}
    for start in range(0, len(calls), _CHUNK):
        chunk = range(start, min(start + _CHUNK, len(calls)))
        answered = await run_pipelined(redis, [calls[i] for i in chunk])
        for i, answer in zip(chunk, answered, strict=True):
            result[pairs[i]] = group_board(answer, heads[i].depths, now_ms)
    return result
