"""The schedule of a run, drawn from a scenario with a seed: the same seed always gives the same schedule.

Arrivals are a non-homogeneous Poisson process drawn by thinning (Lewis–Shedler): candidate arrivals at the peak
rate, each kept with probability rate(t) / peak. Every conversation and agent shift is fixed here, before any I/O,
so two runs with one seed send the same messages at the same offsets; only the system under test differs.
"""

from __future__ import annotations

import dataclasses
import math
import random
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from switchboard_tools.loadgen.scenario import ORDER_ID_FIELD, ChannelName, Scenario, Tenant

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
    # The order the customer asks about ("" when the question is not about one order).
    order_id: str = ""
    # Not taken by an agent this long after the first message, the customer leaves (None: never).
    leave_after_s: float | None = None
    # What the customer writes if the bot answered: its offset_s is the think time after the bot's answer.
    ask_human: PlannedMessage | None = None
    # The customer's member tier ("" for none): what the shop vouches for (scenario `member_tiers`).
    member_tier: str = ""

    @property
    def start_s(self) -> float:
        """When its first message is sent."""
        return self.messages[0].offset_s

    @property
    def tags(self) -> tuple[str, ...]:
        """Every message it may send, the planned ones and the reaction to a bot answer."""
        extra = (self.ask_human.tag,) if self.ask_human is not None else ()
        return tuple(m.tag for m in self.messages) + extra


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
    # The skill groups of the agent's team (empty: every group).
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class SurgeToggle:
    """The operator turning a tenant's surge profile on (`switch`: activate at `at_s`, or schedule it)."""

    at_s: float
    tenant_id: str
    profile: str
    body: Mapping[str, Any]
    switch: str = "activate"


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
        """How many customer messages the run plans (a reaction to a bot answer is sent only if it comes)."""
        return sum(len(c.messages) for c in self.conversations)

    def without_surge(self) -> Schedule:
        """The same schedule with the operator doing nothing: the A/B run with the profile off."""
        return dataclasses.replace(self, surges=())

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


def order_id(rng: random.Random) -> str:
    """A 19-digit order number as Taobao/Tmall write them (no PII mask touches 19 digits in a row)."""
    return f"3{rng.randrange(10**18):018d}"


def customer_email(customer_id: str) -> str:
    """The address a load-test customer writes e-mail from."""
    return f"{customer_id}@buyers.example"


def caller_number(message: PlannedMessage) -> str:
    """The number a load-test caller rings from (derived from the message, so a retry rings from the same)."""
    return f"+86 139 0000 {int(message.tag[:4], 36) % 10000:04d}"


def member_tier(scenario: Scenario, index: int) -> str:
    """The tier of the index-th customer, drawn from a generator of its own: a scenario without tiers plans
    exactly the schedule it planned before tiers existed."""
    if not scenario.member_tiers:
        return ""
    draw = random.Random(f"{scenario.seed}-tier-{index}").random()
    for name in sorted(scenario.member_tiers):
        draw -= scenario.member_tiers[name]
        if draw < 0:
            return name
    return ""


def _conversation(scenario: Scenario, rng: random.Random, index: int, start: float, tenant: str) -> PlannedConversation:
    channel = cast(ChannelName, _pick(rng, scenario.channels))
    language = _pick(rng, scenario.languages)
    intent = _pick(rng, {k: v.weight for k, v in scenario.intents.items()})
    conv = scenario.conversation
    spec = scenario.intents[intent]
    counts = spec.messages or conv.messages
    # A phone call is one transcript stream; e-mails are rarely followed up within minutes.
    count = rng.randint(int(counts.min), int(counts.max)) if channel == "chat" else 1
    order = order_id(rng) if spec.asks_about_an_order else ""
    texts = spec.texts[language]
    messages = []
    offset = start
    for _ in range(max(1, count)):
        tag = _tag(rng)
        text = rng.choice(texts).replace(ORDER_ID_FIELD, order)
        messages.append(PlannedMessage(tag=tag, offset_s=round(offset, 3), text=text))
        offset += rng.uniform(conv.think_time_s.min, conv.think_time_s.max)
    entry = "webhook" if channel == "chat" and rng.random() < scenario.chat_webhook_share else "widget"
    leaves = conv.leave_after_s is not None and (channel == "phone" or (channel == "chat" and entry == "widget"))
    leave_after = round(rng.uniform(conv.leave_after_s.min, conv.leave_after_s.max), 3) if leaves else None  # type: ignore[union-attr]
    ask_human = None
    if order and channel == "chat" and rng.random() < conv.ask_human_share:
        think = rng.uniform(conv.think_time_s.min, conv.think_time_s.max)
        ask_human = PlannedMessage(_tag(rng), round(think, 3), rng.choice(conv.ask_human_texts[language]))
    return PlannedConversation(
        entry=entry,
        conversation_key=f"lg{scenario.seed:x}-{index:06d}",
        tenant_id=tenant,
        customer_id=f"buyer-{rng.randrange(10**9):09d}",
        channel=channel,
        intent=intent,
        language=language,
        messages=tuple(messages),
        order_id=order,
        leave_after_s=leave_after,
        ask_human=ask_human,
        member_tier=member_tier(scenario, index),
    )


def agent_shifts(scenario: Scenario, tenants: Sequence[Tenant], rng: random.Random) -> list[AgentShift]:
    """Every agent's log-on and log-off; at a shift change some leave and as many newcomers join."""
    shifts: list[AgentShift] = []
    change = scenario.shift_change
    for tenant in tenants:
        leaving = round(tenant.agents * change.leaving_fraction) if change else 0

        def team(i: int, tenant: Tenant = tenant) -> tuple[str, ...]:
            return tuple(tenant.teams[i % len(tenant.teams)]) if tenant.teams else ()

        for i in range(tenant.agents):
            off = change.at_s if change and i < leaving else None
            abrupt = change is not None and off is not None and rng.random() < change.abrupt_fraction
            shifts.append(
                AgentShift(tenant.id, f"{tenant.id}-a{i:03d}", 0.0, off, rng.randrange(2**31), abrupt, team(i))
            )
        for j in range(leaving):
            assert change is not None
            on = max(0.0, change.at_s - change.overlap_s)
            # A newcomer joins the team of the leaver it replaces.
            shifts.append(
                AgentShift(tenant.id, f"{tenant.id}-b{j:03d}", on, None, rng.randrange(2**31), groups=team(j))
            )
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
            surges.append(SurgeToggle(op.surge_at_s, tenant_id, op.profile, op.profile_body(), op.switch))
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
