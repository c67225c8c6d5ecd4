"""Statistics of a run, as pure functions over what was observed (no I/O).

Definitions, as contact centres use them:
- *wait* of a conversation: its first message sent → the agent's desktop shows it as theirs (ASSIGNED).
- *service level within T*: conversations answered within T over all conversations that arrived.
- *ASA* (average speed of answer): mean wait of the answered conversations.
- *abandoned*: not answered within the customer's patience (the customer would have left).
- *occupancy* of an agent: share of their logged-on time with at least one conversation open.
- *fairness* of load across a shop's agents: coefficient of variation (0 = even) and Jain's index
  (sum x)² / (n · sum x²), 1 = perfectly even, 1/n = one agent takes everything.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between closest ranks; nan when empty."""
    if not values:
        return math.nan
    if not 0 <= q <= 100:
        raise ValueError("q must be within 0..100")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def latency_summary(values: Sequence[float]) -> dict[str, float]:
    """count, mean, p50, p95, p99 and max of latencies (seconds)."""
    return {
        "count": float(len(values)),
        "mean": sum(values) / len(values) if values else math.nan,
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "max": max(values) if values else math.nan,
    }


def coefficient_of_variation(loads: Sequence[float]) -> float:
    """Standard deviation over mean (0 when all equal; nan when empty or all zero)."""
    if not loads:
        return math.nan
    mean = sum(loads) / len(loads)
    if mean == 0:
        return math.nan
    return math.sqrt(sum((x - mean) ** 2 for x in loads) / len(loads)) / mean


def jain_index(loads: Sequence[float]) -> float:
    """Jain's fairness index of loads: 1.0 when even, 1/n when one takes all (nan when empty or all zero)."""
    squares = sum(x * x for x in loads)
    if not loads or squares == 0:
        return math.nan
    return sum(loads) ** 2 / (len(loads) * squares)


@dataclass(frozen=True)
class ConversationOutcome:
    """How one conversation went: when it started, when (and by whom) it was answered, how long it was handled."""

    tenant_id: str
    channel: str
    started_at: float
    answered_at: float | None = None
    agent_id: str = ""
    handling_s: float | None = None

    @property
    def wait_s(self) -> float | None:
        """Seconds from the first message to the answer; None when never answered."""
        return None if self.answered_at is None else max(0.0, self.answered_at - self.started_at)


@dataclass(frozen=True)
class AgentSession:
    """An agent's time logged on, the time they held work, and what they handled."""

    tenant_id: str
    agent_id: str
    logged_on_s: float
    busy_s: float
    handled: int
    slots: int


def answer_stats(
    outcomes: Sequence[ConversationOutcome], patience_s: float, targets_s: Iterable[float]
) -> dict[str, float]:
    """Service level per target, ASA, abandonment and wait percentiles over conversations."""
    total = len(outcomes)
    waits = [w for o in outcomes if (w := o.wait_s) is not None and w <= patience_s]
    abandoned = total - len(waits)
    result = {
        "conversations": float(total),
        "answered": float(len(waits)),
        "abandoned": float(abandoned),
        "abandonment_rate": abandoned / total if total else math.nan,
        "asa_s": sum(waits) / len(waits) if waits else math.nan,
        "wait_p50_s": percentile(waits, 50),
        "wait_p95_s": percentile(waits, 95),
        "wait_max_s": max(waits) if waits else math.nan,
    }
    for target in targets_s:
        within = sum(1 for w in waits if w <= target)
        result[f"service_level_{target:g}s"] = within / total if total else math.nan
    return result


def per_tenant(
    outcomes: Sequence[ConversationOutcome], patience_s: float, targets_s: Sequence[float]
) -> dict[str, dict[str, float]]:
    """answer_stats for each tenant: the small shops must not suffer from the flagship's surge."""
    groups: dict[str, list[ConversationOutcome]] = defaultdict(list)
    for o in outcomes:
        groups[o.tenant_id].append(o)
    return {tenant: answer_stats(group, patience_s, targets_s) for tenant, group in sorted(groups.items())}


def occupancy_and_fairness(sessions: Sequence[AgentSession]) -> dict[str, object]:
    """Occupancy per agent, and per tenant the spread of handled conversations across its agents."""
    per_agent = {
        s.agent_id: {
            "tenant_id": s.tenant_id,
            "occupancy": s.busy_s / s.logged_on_s if s.logged_on_s > 0 else 0.0,
            "handled": s.handled,
            "logged_on_s": s.logged_on_s,
        }
        for s in sessions
    }
    by_tenant: dict[str, list[AgentSession]] = defaultdict(list)
    for s in sessions:
        by_tenant[s.tenant_id].append(s)
    fairness = {}
    for tenant, group in sorted(by_tenant.items()):
        # Load per hour on shift, so an agent who joined at the shift change is not "unfair" for having less.
        loads = [s.handled / s.logged_on_s * 3600 if s.logged_on_s > 0 else 0.0 for s in group]
        fairness[tenant] = {
            "agents": len(group),
            "cv": coefficient_of_variation(loads),
            "jain": jain_index(loads),
            "mean_occupancy": sum(s.busy_s / s.logged_on_s for s in group if s.logged_on_s > 0) / len(group),
        }
    return {"per_agent": per_agent, "per_tenant": fairness}


@dataclass
class TimeSeries:
    """Counts or gauges per whole second of the run, keyed by series name."""

    points: dict[str, dict[int, float]] = field(default_factory=lambda: defaultdict(dict))
    counters: set[str] = field(default_factory=set)

    def add(self, series: str, t_s: float, value: float = 1.0) -> None:
        """Add `value` to the series' bucket at second int(t_s)."""
        self.counters.add(series)
        bucket = self.points[series]
        second = int(t_s)
        bucket[second] = bucket.get(second, 0.0) + value

    def set(self, series: str, t_s: float, value: float) -> None:
        """Set a gauge's value at second int(t_s) (the last write of a second wins)."""
        self.points[series][int(t_s)] = value

    def as_lists(self) -> dict[str, list[tuple[int, float]]]:
        """Every series as sorted (second, value) pairs; a counter's quiet seconds are zeros, not gaps."""
        result = {}
        for name, bucket in sorted(self.points.items()):
            if name in self.counters and bucket:
                result[name] = [(t, bucket.get(t, 0.0)) for t in range(min(bucket), max(bucket) + 1)]
            else:
                result[name] = sorted(bucket.items())
        return result


def throughput(timestamps: Sequence[float], started_at: float) -> dict[str, float]:
    """Events per second: over the span from the first to the last event, and at the busiest second."""
    if not timestamps:
        return {"count": 0.0, "mean_per_s": 0.0, "peak_per_s": 0.0}
    per_second: dict[int, int] = defaultdict(int)
    for t in timestamps:
        per_second[int(t - started_at)] += 1
    span = max(timestamps) - min(timestamps)
    return {
        "count": float(len(timestamps)),
        "mean_per_s": len(timestamps) / span if span > 0 else float(len(timestamps)),
        "peak_per_s": float(max(per_second.values())),
    }


def busiest_window_rate(timestamps: Sequence[float], window_s: float) -> float:
    """The highest arrival rate (per second) over any window of `window_s` seconds."""
    ordered = sorted(timestamps)
    best = 0
    start = 0
    for end, t in enumerate(ordered):
        while t - ordered[start] > window_s:
            start += 1
        best = max(best, end - start + 1)
    return best / window_s if ordered else 0.0


def effective_slots(agents_online: float, capacity: Mapping[str, int], channel_mix: Mapping[str, float]) -> int:
    """Concurrent conversations a shop's agents hold, weighting each channel's slots by its share of traffic.

    Erlang C counts servers; a chat agent with 3 slots is 3 servers for chat, a phone slot blocks the agent, so
    the servers of a mixed shop are approximated by agents × the traffic-weighted slots per agent.
    """
    total = sum(channel_mix.values())
    if total <= 0:
        return 0
    per_agent = sum(capacity.get(ch, 1) * share / total for ch, share in channel_mix.items())
    return max(1, math.floor(agents_online * per_agent))
