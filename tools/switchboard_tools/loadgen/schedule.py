"""The schedule of a run, drawn from a scenario with a seed: the same seed always gives the same schedule.

Arrivals are a non-homogeneous Poisson process drawn by thinning (Lewis–Shedler): candidate arrivals at the peak
rate, each kept with probability rate(t) / peak. Every conversation and agent shift is fixed here, before any I/O,
so two runs with one seed send the same messages at the same offsets; only the system under test differs.
"""

from __future__ import annotations

import math
import random
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import cast

from switchboard_tools.loadgen.scenario import ChannelName, Scenario, Tenant

# Tags are lowercase letters only, so PII masking (digits, e-mail addresses) never touches them.
TAG_LETTERS = string.ascii_lowercase
TAG_LENGTH = 10


@dataclass(frozen=True)
class PlannedMessage:
    """One customer message: sent `offset_s` after the run started, found again at the desktop by its tag."""

    tag: str
    offset_s: float
    text: str


@dataclass(frozen=True)
class PlannedConversation:
    """A customer's conversation with a shop."""

    conversation_key: str
    tenant_id: str
    customer_id: str
    channel: ChannelName
    intent: str
    language: str
    messages: tuple[PlannedMessage, ...]
    # How a chat customer arrives: the shop's widget (websocket) or a platform's webhook.
    entry: str = "widget"

    @property
    def start_s(self) -> float:
        """When its first message is sent."""
        return self.messages[0].offset_s


@dataclass(frozen=True)
class AgentShift:
    """One simulated agent: logs on at `on_s`, logs off at `off_s` (None: stays to the end)."""

    tenant_id: str
    agent_id: str
    on_s: float
    off_s: float | None
    seed: int
    # Leaves by closing the desktop with work in hand instead of handing over.
    abrupt: bool = False


@dataclass(frozen=True)
class SurgeToggle:
    """The operator turning a tenant's surge profile on."""

    at_s: float
    tenant_id: str
    profile: str
    capacity_multiplier: float


@dataclass(frozen=True)
class Schedule:
    """Everything a run will do, in time order."""

    scenario: str
    seed: int
    conversations: tuple[PlannedConversation, ...]
    agents: tuple[AgentShift, ...]
    surges: tuple[SurgeToggle, ...]
    truncated: bool = False
    arrivals_per_bucket: tuple[int, ...] = field(default=())

    @property
    def message_count(self) -> int:
        """How many customer messages the run sends."""
        return sum(len(c.messages) for c in self.conversations)

    @property
    def last_send_s(self) -> float:
        """Offset of the last message (0 when there are none)."""
        return max((m.offset_s for c in self.conversations for m in c.messages), default=0.0)


def _pick(rng: random.Random, weights: Mapping[str, float]) -> str:
    names = sorted(weights)
    return rng.choices(names, weights=[weights[n] for n in names], k=1)[0]


def _tag(rng: random.Random) -> str:
    return "".join(rng.choices(TAG_LETTERS, k=TAG_LENGTH))


def arrival_times(scenario: Scenario, rng: random.Random) -> list[float]:
    """Arrival offsets in [0, duration_s), by thinning at the peak rate."""
    peak = scenario.arrivals.peak_rate()
    times: list[float] = []
    t = 0.0
    while True:
        t += rng.expovariate(peak)
        if t >= scenario.duration_s:
            return times
        if rng.random() * peak <= scenario.arrivals.rate(t):
            times.append(t)


def _conversation(scenario: Scenario, rng: random.Random, index: int, start: float, tenant: str) -> PlannedConversation:
    channel = cast(ChannelName, _pick(rng, scenario.channels))
    language = _pick(rng, scenario.languages)
    intent = _pick(rng, {k: v.weight for k, v in scenario.intents.items()})
    conv = scenario.conversation
    # A phone call is one transcript stream; e-mails are rarely followed up within minutes.
    count = rng.randint(int(conv.messages.min), int(conv.messages.max)) if channel == "chat" else 1
    texts = scenario.intents[intent].texts[language]
    messages = []
    offset = start
    for _ in range(max(1, count)):
        tag = _tag(rng)
        messages.append(PlannedMessage(tag=tag, offset_s=round(offset, 3), text=rng.choice(texts)))
        offset += rng.uniform(conv.think_time_s.min, conv.think_time_s.max)
    entry = "webhook" if channel == "chat" and rng.random() < scenario.chat_webhook_share else "widget"
    return PlannedConversation(
        entry=entry,
        conversation_key=f"lg{scenario.seed:x}-{index:06d}",
        tenant_id=tenant,
        customer_id=f"buyer-{rng.randrange(10**9):09d}",
        channel=channel,
        intent=intent,
        language=language,
        messages=tuple(messages),
    )


def agent_shifts(scenario: Scenario, tenants: Sequence[Tenant], rng: random.Random) -> list[AgentShift]:
    """Every agent's log-on and log-off; at a shift change some leave and as many newcomers join."""
    shifts: list[AgentShift] = []
    change = scenario.shift_change
    for tenant in tenants:
        leaving = round(tenant.agents * change.leaving_fraction) if change else 0
        for i in range(tenant.agents):
            off = change.at_s if change and i < leaving else None
            abrupt = change is not None and off is not None and rng.random() < change.abrupt_fraction
            shifts.append(AgentShift(tenant.id, f"{tenant.id}-a{i:03d}", 0.0, off, rng.randrange(2**31), abrupt))
        for j in range(leaving):
            assert change is not None
            on = max(0.0, change.at_s - change.overlap_s)
            shifts.append(AgentShift(tenant.id, f"{tenant.id}-b{j:03d}", on, None, rng.randrange(2**31)))
    return shifts


def build_schedule(scenario: Scenario, seed: int | None = None) -> Schedule:
    """The whole run, bounded by `limits.max_conversations`; the scenario's seed unless one is given."""
    seed = scenario.seed if seed is None else seed
    rng = random.Random(seed)
    tenants = scenario.all_tenants()
    shares = {t.id: t.share for t in tenants}
    times = arrival_times(scenario, rng)
    truncated = len(times) > scenario.limits.max_conversations
    times = times[: scenario.limits.max_conversations]
    scenario = scenario.model_copy(update={"seed": seed})
    conversations = [_conversation(scenario, rng, i, t, _pick(rng, shares)) for i, t in enumerate(times)]
    surges: list[SurgeToggle] = []
    if scenario.operator is not None:
        op = scenario.operator
        for tenant_id in op.tenants or [t.id for t in tenants]:
            surges.append(SurgeToggle(op.surge_at_s, tenant_id, op.profile, op.capacity_multiplier))
    buckets = [0] * max(1, math.ceil(scenario.duration_s))
    for t in times:
        buckets[int(t)] += 1
    return Schedule(
        scenario=scenario.name,
        seed=seed,
        conversations=tuple(conversations),
        agents=tuple(agent_shifts(scenario, tenants, rng)),
        surges=tuple(surges),
        truncated=truncated,
        arrivals_per_bucket=tuple(buckets),
    )
