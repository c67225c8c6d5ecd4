"""The supervisor board's figures per (tenant, skill group): live, as Prometheus gauges, and 30 minutes of history.

The gauges (`sb_queue_waiting`, `sb_queue_oldest_wait_seconds` per channel, `sb_service_level`,
`sb_service_level_target_seconds`, `sb_occupancy`, `sb_agents`; gateway/metrics.py) are set from each sample, the
very figures the board shows, with tenant and group labels bounded to the configured ones (state/metrics.py).

Three sources, each read once and fed to the board, the series and the gauges alike (no second bookkeeping):
- the queues and agents in Redis, read with `queue_stats.read_group_boards` (the module that computes the desktops'
  queue_stats frames) every `SB_BOARD_SAMPLE_S`;
- the service level and estimated wait the router keeps in Redis (`state/figures.py`: answered, abandoned and
  still waiting past the target over `SB_BOARD_SL_WINDOW_S`, against the tenant's routing target; the estimated
  wait per channel), read at the same time, so the board shows the figures the router's overflow decides on;
- the routing decisions on sb.routing.v1 (RoutingTally): arrivals (a conversation entering a group's line) per
  interval, for the arrivals chart.

Every replica consumes the whole routing topic in a consumer group of its own, so each holds the same arrivals; the
history is in memory, bounded (`SB_BOARD_HISTORY_S` / `SB_BOARD_SAMPLE_S` points per group), and starts anew with
the replica (a new group reads the topic from its start, so the last 30 minutes of arrivals are rebuilt).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from redis.asyncio import Redis
from redis.exceptions import RedisError

from switchboard.contracts import RoutingEvent, RoutingEventType
from switchboard.gateway.metrics import (
    AGENTS,
    OCCUPANCY,
    QUEUE_OLDEST_WAIT,
    QUEUE_WAITING,
    SERVICE_LEVEL,
    SERVICE_LEVEL_TARGET,
)
from switchboard.gateway.queue_stats import BOARD_STATUSES, GroupBoard, TenantGroup, read_group_boards
from switchboard.runtime.consumer import Delivery, Rejected
from switchboard.runtime.logs import get_logger
from switchboard.state.figures import ServiceLevel, read_estimates, read_service_levels
from switchboard.state.keys import Keys
from switchboard.state.metrics import LabelBounds
from switchboard.state.roster import Roster

log = get_logger(__name__)

DEFAULT_TARGET_S = 30.0
# An estimate the router has not rewritten for this long (no router running) is not shown.
ESTIMATE_FRESH_MS = 300_000
_ARRIVING = (
    RoutingEventType.ROUTING_EVENT_QUEUED,
    RoutingEventType.ROUTING_EVENT_OFFERED,
    RoutingEventType.ROUTING_EVENT_ASSIGNED,
)


class RoutingTally:
    """Arrivals per (tenant, group) from routing decisions, kept for a window (pure over its input)."""

    def __init__(self, window_s: float) -> None:
        self.window_ms = int(window_s * 1000)
        self.arrivals: dict[TenantGroup, deque[int]] = defaultdict(deque)
        # (tenant, conversation, enqueued_ms) already counted: a conversation enters a line once per enqueue time.
        self._arrived: dict[tuple[str, str, int], int] = {}

    def add(self, event: RoutingEvent) -> None:
        """Count one decision."""
        enqueued_ms = event.enqueued_at.ToMilliseconds() if event.HasField("enqueued_at") else 0
        if not enqueued_ms or event.type not in _ARRIVING:
            return
        at_ms = event.at.ToMilliseconds() if event.HasField("at") else int(time.time() * 1000)
        ident = (event.tenant_id, event.conversation_id, enqueued_ms)
        if ident not in self._arrived:
            self._arrived[ident] = at_ms
            self.arrivals[(event.tenant_id, event.skill_group)].append(at_ms)

    def prune(self, now_ms: int) -> None:
        """Forget what left the window."""
        cutoff = now_ms - self.window_ms
        for arrivals in self.arrivals.values():
            while arrivals and arrivals[0] < cutoff:
                arrivals.popleft()
        for ident in [i for i, at in self._arrived.items() if at < cutoff]:
            del self._arrived[ident]

    def arrived_since(self, pair: TenantGroup, since_ms: int) -> int:
        """Arrivals of a group at or after `since_ms`."""
        return sum(1 for at in self.arrivals.get(pair, ()) if at >= since_ms)

    async def handle(self, batch: Sequence[Delivery]) -> Sequence[Rejected]:
        """The consumer's handler: count every RoutingEvent of the batch."""
        for delivery in batch:
            if isinstance(delivery.message, RoutingEvent):
                self.add(delivery.message)
        return []


@dataclass(frozen=True, slots=True)
class BoardPoint:
    """One sample of a group for the charts."""

    at_ms: int
    waiting: int
    arrivals: int
    service_level: float | None


@dataclass(frozen=True, slots=True)
class TenantRoutingFacts:
    """What the board takes from a tenant's routing config: its service-level target and its skill groups."""

    target_s: float
    groups: tuple[str, ...]


def routing_facts(routing_dir: Path) -> dict[str, TenantRoutingFacts]:
    """Each tenant's `queue.service_level_target_s` and skill groups from the router's config/routing/<tenant>.yaml
    (the router validates those files; a file that cannot be read here is logged and left out)."""
    found: dict[str, TenantRoutingFacts] = {}
    for path in sorted(routing_dir.glob("*.yaml")) if routing_dir.is_dir() else []:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
            target = float(data.get("queue", {}).get("service_level_target_s", DEFAULT_TARGET_S))
            groups = tuple(str(g["name"]) for g in data.get("skill_groups", []))
            found[str(data["tenant"])] = TenantRoutingFacts(target, groups)
        except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError, AttributeError) as exc:
            log.warning("board_routing_config_skipped", path=str(path), error=repr(exc))
    return found


def service_level_targets(routing_dir: Path) -> dict[str, float]:
    """Each tenant's routing target (routing_facts)."""
    return {tenant: facts.target_s for tenant, facts in routing_facts(routing_dir).items()}


@dataclass
class GaugeValues:
    """The gauges of one sample, folded per bounded label set: groups that share a label set ("unknown" tenant,
    "none" group) add their waiting, agents and slots and keep the longest wait; service levels and targets only of
    configured groups (a level of several groups is no level of any)."""

    waiting: dict[tuple[str, str, str], int] = field(default_factory=dict)
    oldest: dict[tuple[str, str, str], int] = field(default_factory=dict)
    agents: dict[tuple[str, str, str], int] = field(default_factory=dict)
    slots: dict[TenantGroup, tuple[int, int]] = field(default_factory=dict)
    levels: dict[TenantGroup, float | None] = field(default_factory=dict)
    targets: dict[TenantGroup, float] = field(default_factory=dict)

    def occupancy(self, labels: TenantGroup) -> float:
        """Used over effective slots of the label set (0 when none)."""
        used, slots = self.slots[labels]
        return round(used / slots, 3) if slots else 0.0


def gauge_values(
    boards: dict[TenantGroup, GroupBoard],
    bounds: LabelBounds,
    levels: dict[TenantGroup, float | None],
    targets: dict[str, float],
) -> GaugeValues:
    """The gauges' values of a sample (pure)."""
    out = GaugeValues()
    for (tenant, group), board in sorted(boards.items()):
        labels = bounds.pair(tenant, group)
        for channel, waiting in board.queue.waiting.items():
            key = (*labels, channel)
            out.waiting[key] = out.waiting.get(key, 0) + waiting
            out.oldest[key] = max(out.oldest.get(key, 0), board.queue.oldest_wait_by_channel.get(channel, 0))
        for status in BOARD_STATUSES:
            key = (*labels, status)
            out.agents[key] = out.agents.get(key, 0) + board.agents_by_status.get(status, 0)
        used, slots = out.slots.get(labels, (0, 0))
        out.slots[labels] = (used + board.used_slots, slots + board.slots)
        if labels == (tenant, group):
            out.levels[labels] = levels.get((tenant, group))
            out.targets[labels] = targets.get(tenant, DEFAULT_TARGET_S)
    return out


def export(values: GaugeValues) -> None:
    """Set the gauges; a configured group whose window holds no arrival has no service level (series removed)."""
    for key, waiting in values.waiting.items():
        QUEUE_WAITING.labels(*key).set(waiting)
        QUEUE_OLDEST_WAIT.labels(*key).set(values.oldest[key])
    for key, count in values.agents.items():
        AGENTS.labels(*key).set(count)
    for labels in values.slots:
        OCCUPANCY.labels(*labels).set(values.occupancy(labels))
    for labels, target in values.targets.items():
        SERVICE_LEVEL_TARGET.labels(*labels).set(target)
        level = values.levels.get(labels)
        if level is not None:
            SERVICE_LEVEL.labels(*labels).set(level)
        else:
            with contextlib.suppress(KeyError):
                SERVICE_LEVEL.remove(*labels)


class BoardFigures:
    """Samples every group of the known tenants and keeps the live figures, the series and the gauges."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        tally: RoutingTally,
        *,
        sample_s: float,
        history_s: float,
        head: int,
        sl_window_s: float = 900.0,
    ) -> None:
        self.redis = redis
        self.sl_window_s = sl_window_s
        self.levels: dict[TenantGroup, ServiceLevel] = {}
        self.estimates: dict[TenantGroup, dict[str, int]] = {}
        self.keys = keys
        self.tally = tally
        self.sample_s = sample_s
        self.head = head
        self.targets: dict[str, float] = {}
        self.bounds = LabelBounds()
        self.groups: dict[str, set[str]] = defaultdict(set)
        self.live: dict[TenantGroup, GroupBoard] = {}
        self.series: dict[TenantGroup, deque[BoardPoint]] = defaultdict(
            lambda: deque(maxlen=max(2, int(history_s / max(sample_s, 0.1))))
        )
        self.sampled_ms = 0
        self.stopping = asyncio.Event()

    def know_roster(self, roster: Roster) -> None:
        """Watch every group of the roster's agents (temporary agents' groups join as routing decisions name them);
        the roster's tenants and groups are configured ones for the gauges' labels."""
        for tenant in roster.tenants:
            for agent in tenant.agents:
                self.groups[tenant.tenant_id].update(agent.groups)
        self.bounds.update(self.groups)

    def know_routing(self, facts: dict[str, TenantRoutingFacts]) -> None:
        """The tenants' service-level targets, and their skill groups as configured label values."""
        self.targets = {tenant: f.target_s for tenant, f in facts.items()}
        self.bounds.update({tenant: f.groups for tenant, f in facts.items()})

    def target(self, tenant_id: str) -> float:
        """The tenant's service-level target in seconds."""
        return self.targets.get(tenant_id, DEFAULT_TARGET_S)

    async def run(self) -> None:
        """Sample every `sample_s` until stopped; a Redis error skips a sample."""
        while not self.stopping.is_set():
            try:
                await self.sample(int(time.time() * 1000))
            except (RedisError, OSError) as exc:
                log.warning("board_sample_failed", error=repr(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), self.sample_s)

    def stop(self) -> None:
        """End `run`."""
        self.stopping.set()

    async def sample(self, now_ms: int) -> None:
        """Read every group once; append a point to each series and set the gauges."""
        for tenant, group in list(self.tally.arrivals):
            self.groups[tenant].add(group)
        self.tally.prune(now_ms)
        pairs = sorted((t, g) for t, groups in self.groups.items() for g in groups if g)
        boards = await read_group_boards(self.redis, self.keys, pairs, now_ms, self.head)
        await self._read_shared_figures(pairs, now_ms)
        since = self.sampled_ms or now_ms - int(self.sample_s * 1000)
        for pair, board in boards.items():
            self.live[pair] = board
            waiting = sum(board.queue.waiting.values())
            arrivals = self.tally.arrived_since(pair, since)
            self.series[pair].append(BoardPoint(now_ms, waiting, arrivals, self.level(pair)))
        export(gauge_values(boards, self.bounds, {pair: self.level(pair) for pair in boards}, self.targets))
        self.sampled_ms = now_ms

    async def _read_shared_figures(self, pairs: list[TenantGroup], now_ms: int) -> None:
        """The router's service level and estimated waits of every group (state/figures.py), per tenant."""
        for tenant in sorted({t for t, _ in pairs}):
            groups = [g for t, g in pairs if t == tenant]
            levels = await read_service_levels(
                self.redis,
                self.keys,
                tenant,
                groups,
                target_s=self.target(tenant),
                window_s=self.sl_window_s,
                now_ms=now_ms,
            )
            estimates = await read_estimates(self.redis, self.keys, tenant)
            for group in groups:
                self.levels[(tenant, group)] = levels[group]
                self.estimates[(tenant, group)] = {
                    channel: round(estimate.wait_s())
                    for (of, channel), estimate in sorted(estimates.items())
                    if of == group and now_ms - estimate.at_ms <= ESTIMATE_FRESH_MS
                }

    def level(self, pair: TenantGroup) -> float | None:
        """The group's service level over the window (None when nothing arrived)."""
        found = self.levels.get(pair)
        level = found.level if found is not None else None
        return round(level, 3) if level is not None else None

    def estimated_wait(self, pair: TenantGroup) -> int | None:
        """The wait of a conversation joining the group now: chat's when the group takes chat, else the longest."""
        by_channel = self.estimates.get(pair) or {}
        if "chat" in by_channel:
            return by_channel["chat"]
        return max(by_channel.values()) if by_channel else None

    def tenant_view(self, tenant_id: str, now_ms: int) -> dict[str, Any]:
        """Everything the board shows of one tenant's groups: live figures and series (only this tenant's)."""
        target = self.target(tenant_id)
        groups = []
        for (tenant, group), board in sorted(self.live.items()):
            if tenant != tenant_id:
                continue
            pair = (tenant, group)
            waiting = sum(board.queue.waiting.values())
            shared = self.levels.get(pair) or ServiceLevel(target, self.sl_window_s)
            groups.append(
                {
                    "skill_group": group,
                    "waiting": waiting,
                    "waiting_by_channel": board.queue.waiting,
                    "oldest_wait_s": board.queue.oldest_wait_s,
                    "oldest_wait_by_channel": board.queue.oldest_wait_by_channel,
                    "service_level": self.level(pair),
                    "service_level_target_s": target,
                    "answered": shared.answered,
                    "abandoned": shared.abandoned,
                    "waiting_over_target": shared.waiting_over,
                    "estimated_wait_s": self.estimated_wait(pair),
                    "estimated_wait_by_channel": self.estimates.get(pair) or {},
                    "agents_by_status": board.agents_by_status,
                    "occupancy": board.occupancy,
                    "series": [
                        {
                            "at_ms": p.at_ms,
                            "waiting": p.waiting,
                            "arrivals": p.arrivals,
                            "service_level": p.service_level,
                        }
                        for p in self.series[pair]
                    ],
                }
            )
        return {
            "tenant_id": tenant_id,
            "sampled_ms": self.sampled_ms,
            "sample_s": self.sample_s,
            "service_level_window_s": int(self.sl_window_s),
            "groups": groups,
        }
