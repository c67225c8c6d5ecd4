"""Service level and estimated wait per tenant, skill group and channel: the one place they are kept and read.

Kept in Redis, so every router replica writes the same figures and they survive a restart; read by the router
(overflow triggers), the adapters (position and estimated wait for waiting customers) and the gateway's board.

**Outcomes** (written by the router where it publishes the decision): a conversation is *answered* when an agent
takes it (assigned directly, or an offer accepted) and *abandoned* when the customer leaves while it is queued or
offered. Each arrival of a conversation (its `enqueued_ms`) is counted once, as whichever outcome came first, in the
minute of the outcome: `keys.figures_minute(tenant, group, minute)` holds per channel the answered count per wait
bin (`BIN_EDGES_S`), the abandoned count and the sums of their waits. Minutes live `KEEP_S`.

**Service level** (`read_service_level`), as contact centers define it: answered within the target over every
conversation that arrived and was decided in the window, abandoned included, plus those still waiting longer than
the target (counted as misses now rather than only once they are answered late). Exact when the target is one of
`BIN_EDGES_S`; otherwise a wait in the bin that straddles the target counts as a miss.

**Estimated wait** (`read_estimate`): the router writes per group and channel the seconds one queue position takes
(the group's average handle time over the channel's slots of its available agents) and the queue length, on every
sweep. A channel's estimate depends only on its own queue: an e-mail backlog does not lengthen the chat wait.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from redis.asyncio import Redis

from switchboard.runtime.lua import LuaScript, ScriptCall, run_pipelined
from switchboard.state.keys import Keys

CHANNELS = ("chat", "email", "phone")
# Upper edges (seconds, inclusive) of the answered-wait bins; a wait above the last edge is in bin len(BIN_EDGES_S).
# The common service-level targets (10/20/30/60/180 s ...) are edges, so their level is exact.
BIN_EDGES_S = (5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 240, 300, 600, 900, 1800, 3600)
MINUTE_MS = 60_000
# Minutes are kept this long: the longest window a reader may ask for.
KEEP_S = 3600
DEFAULT_WINDOW_S = 900
# A conversation's "counted" marker outlives any wait a conversation can have in a queue.
COUNTED_TTL_S = 2 * 24 * 3600
# At most this many of a queue's longest waiters are looked at for "still waiting past the target".
WAITING_SCAN = 1000

COUNT = LuaScript.load(__file__, "figures_count")

ANSWERED = "answered"
ABANDONED = "abandoned"


def wait_bin(wait_s: float) -> int:
    """The bin of an answered wait."""
    for i, edge in enumerate(BIN_EDGES_S):
        if wait_s <= edge:
            return i
    return len(BIN_EDGES_S)


@dataclass(frozen=True)
class Outcome:
    """One conversation's arrival answered or abandoned at `at_ms` (its wait is from `enqueued_ms`)."""

    kind: str
    conversation_id: str
    group: str
    channel: str
    enqueued_ms: int
    at_ms: int

    @property
    def wait_ms(self) -> int:
        """How long the customer waited."""
        return max(0, self.at_ms - self.enqueued_ms)

    def fields(self) -> tuple[str, str]:
        """The minute hash's count and wait-sum fields of this outcome."""
        if self.kind == ANSWERED:
            return f"{self.channel}:a:{wait_bin(self.wait_ms / 1000)}", f"{self.channel}:aw"
        return f"{self.channel}:x", f"{self.channel}:xw"


async def record_outcomes(redis: Redis, keys: Keys, tenant: str, outcomes: Sequence[Outcome]) -> int:
    """Count outcomes (each arrival once, whatever is redelivered); returns how many were new."""
    calls = []
    for o in outcomes:
        if o.kind not in (ANSWERED, ABANDONED) or o.channel not in CHANNELS or not o.group:
            raise ValueError(f"not a countable outcome: {o}")
        count_field, sum_field = o.fields()
        ks = (
            keys.figures_counted(tenant, o.conversation_id, o.enqueued_ms),
            keys.figures_minute(tenant, o.group, o.at_ms // MINUTE_MS),
        )
        calls.append(ScriptCall(COUNT, ks, (count_field, sum_field, o.wait_ms, COUNTED_TTL_S, KEEP_S + 120)))
    if not calls:
        return 0
    return sum(int(r) for r in await run_pipelined(redis, calls))


@dataclass
class ServiceLevel:
    """A group's (or one channel's) outcomes over a window, and conversations still waiting past the target."""

    target_s: float
    window_s: float
    answered: int = 0
    answered_within: int = 0
    abandoned: int = 0
    waiting_over: int = 0
    answered_wait_ms: int = 0
    abandoned_wait_ms: int = 0

    @property
    def offered(self) -> int:
        """Every conversation the level is over: answered, abandoned, and waiting past the target."""
        return self.answered + self.abandoned + self.waiting_over

    @property
    def level(self) -> float | None:
        """Answered within the target over all of them; None when nothing arrived."""
        return self.answered_within / self.offered if self.offered else None

    @property
    def average_answer_s(self) -> float | None:
        """Average wait of the answered (ASA)."""
        return self.answered_wait_ms / self.answered / 1000 if self.answered else None

    def add_minute(self, row: Mapping[str, int], channels: Iterable[str]) -> None:
        """Fold one minute hash (fields as `Outcome.fields`) in, for the given channels."""
        within = sum(1 for edge in BIN_EDGES_S if edge <= self.target_s)
        for ch in channels:
            for b in range(len(BIN_EDGES_S) + 1):
                n = row.get(f"{ch}:a:{b}", 0)
                self.answered += n
                if b < within:
                    self.answered_within += n
            self.answered_wait_ms += row.get(f"{ch}:aw", 0)
            self.abandoned += row.get(f"{ch}:x", 0)
            self.abandoned_wait_ms += row.get(f"{ch}:xw", 0)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")


def _ints(row: Mapping[bytes | str, bytes | str]) -> dict[str, int]:
    out = {}
    for k, v in row.items():
        try:
            out[_text(k)] = int(_text(v))
        except ValueError:
            continue  # a field edited by hand into garbage counts nothing
    return out


async def read_service_levels(
    redis: Redis,
    keys: Keys,
    tenant: str,
    groups: Iterable[str],
    *,
    target_s: float,
    channel: str | None = None,
    window_s: float = DEFAULT_WINDOW_S,
    now_ms: int,
) -> dict[str, ServiceLevel]:
    """`read_service_level` for several groups of a tenant in two round trips."""
    names = sorted(set(groups))
    channels = CHANNELS if channel is None else (channel,)
    window_s = min(float(window_s), KEEP_S)
    last = now_ms // MINUTE_MS
    minutes = range(last - max(1, math.ceil(window_s / 60)) + 1, last + 1)
    pipe = redis.pipeline(transaction=False)
    for g in names:
        for m in minutes:
            pipe.hgetall(keys.figures_minute(tenant, g, m))
    for g in names:
        for ch in channels:
            pipe.zrangebyscore(keys.queue_channel(tenant, g, ch), "-inf", now_ms - target_s * 1000, 0, WAITING_SCAN)
    rows = await pipe.execute()
    out = {g: ServiceLevel(target_s, window_s) for g in names}
    for i, g in enumerate(names):
        for row in rows[i * len(minutes) : (i + 1) * len(minutes)]:
            out[g].add_minute(_ints(row), channels)
    heads = rows[len(names) * len(minutes) :]
    waiting = [
        (g, _text(conv))
        for i, g in enumerate(names)
        for row in heads[i * len(channels) : (i + 1) * len(channels)]
        for conv in row
    ]
    if waiting:
        await _count_waiting(redis, keys, tenant, waiting, out, now_ms - target_s * 1000)
    return out


async def _count_waiting(
    redis: Redis, keys: Keys, tenant: str, waiting: list[tuple[str, str]], out: dict[str, ServiceLevel], before: float
) -> None:
    # A queue's score is the arrival less a priority bonus, so the queue's head up to `before` holds every
    # conversation that arrived before it (and some later ones with priority); the arrival time decides. A
    # conversation waiting in an overflow ring's queue too counts for its own group only.
    pipe = redis.pipeline(transaction=False)
    for _, conv in waiting:
        pipe.hmget(keys.conversation(tenant, conv), "group", "enqueued_ms", "state")
    for (g, _), (group, enq, state) in zip(waiting, await pipe.execute(), strict=True):
        arrived = _text(enq)
        if _text(group) == g and _text(state) == "queued" and arrived.isdigit() and int(arrived) <= before:
            out[g].waiting_over += 1


async def read_service_level(
    redis: Redis,
    keys: Keys,
    tenant: str,
    group: str,
    channel: str | None = None,
    *,
    target_s: float,
    window_s: float = DEFAULT_WINDOW_S,
    now_ms: int,
) -> ServiceLevel:
    """A group's service level over the last `window_s` (all channels, or one), with `target_s` as the target.

    `.level` is None when nothing arrived in the window; the counts behind it are there for boards and reports.
    """
    found = await read_service_levels(
        redis, keys, tenant, [group], target_s=target_s, channel=channel, window_s=window_s, now_ms=now_ms
    )
    return found[group]


@dataclass(frozen=True)
class Estimate:
    """How long a place in a group's queue of one channel takes, and how many wait there, as of `at_ms`."""

    seconds_per_position: float
    queue_length: int
    at_ms: int

    def wait_s(self, position: int | None = None) -> float:
        """The estimated wait at a queue position (1 = next), or of a conversation joining the queue now."""
        ahead = self.queue_length + 1 if position is None else max(1, position)
        return ahead * self.seconds_per_position

    def encode(self) -> str:
        """The JSON kept in the estimates hash."""
        return json.dumps(
            {"spp": round(self.seconds_per_position, 3), "len": self.queue_length, "at": self.at_ms},
            separators=(",", ":"),
        )

    @classmethod
    def decode(cls, raw: bytes | str) -> Estimate | None:
        """An estimate from its JSON, or None when it is not one."""
        try:
            value = json.loads(raw)
            return cls(float(value["spp"]), int(value["len"]), int(value["at"]))
        except (ValueError, KeyError, TypeError):
            return None


@dataclass
class Estimates:
    """Estimates of a tenant's groups and channels, as the router writes them in one step."""

    by_queue: dict[tuple[str, str], Estimate] = field(default_factory=dict)

    def put(self, group: str, channel: str, estimate: Estimate) -> None:
        """Set one group's estimate for one channel."""
        self.by_queue[(group, channel)] = estimate


async def write_estimates(redis: Redis, keys: Keys, tenant: str, estimates: Estimates) -> None:
    """Store the estimates (router), replacing those of the same group and channel."""
    if estimates.by_queue:
        mapping = {f"{g}:{ch}": e.encode() for (g, ch), e in estimates.by_queue.items()}
        await redis.hset(keys.figures_estimates(tenant), mapping=mapping)  # type: ignore[arg-type]


async def read_estimate(redis: Redis, keys: Keys, tenant: str, group: str, channel: str) -> Estimate | None:
    """The estimate of a group's queue of one channel, or None before the router wrote one.

    `estimate.wait_s(position)` is what to tell a customer at that position; `at_ms` says how fresh it is (the
    router rewrites it every sweep, about every second).
    """
    raw = await redis.hget(keys.figures_estimates(tenant), f"{group}:{channel}")
    return Estimate.decode(raw) if raw else None


async def read_estimates(redis: Redis, keys: Keys, tenant: str) -> dict[tuple[str, str], Estimate]:
    """Every estimate of a tenant by (group, channel) (boards)."""
    out = {}
    for k, v in (await redis.hgetall(keys.figures_estimates(tenant))).items():
        group, _, channel = _text(k).rpartition(":")
        estimate = Estimate.decode(v)
        if estimate is not None and group:
            out[(group, channel)] = estimate
    return out
