"""A big-sale scenario: the traffic, the shops and the agents of one load test, read from a YAML file.

Times are seconds of the run. A scenario that must finish on a laptop compresses a sale (double11 runs a 00:00
spike in a few minutes); the file says how it was scaled, the numbers here are what the run does.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from switchboard.routing.surge import SurgeProfile

ChannelName = Literal["chat", "email", "phone"]
CHANNELS: tuple[ChannelName, ...] = ("chat", "email", "phone")
INTENTS = ("pre_sales", "order", "order_status", "after_sales", "logistics", "complaints", "promotions", "cross_border")
# In an intent's sample texts, replaced by the order id the customer asks about (one of the run's order file).
ORDER_ID_FIELD = "{order_id}"
SCENARIO_DIR = Path(__file__).resolve().parents[3] / "config" / "scenarios"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Spike(_Model):
    """The 00:00 surge: arrivals rise to `peak_multiplier` × baseline within `ramp_s`, then decay exponentially."""

    at_s: float = Field(ge=0)
    peak_multiplier: float = Field(ge=1)
    ramp_s: float = Field(gt=0)
    decay_s: float = Field(gt=0, description="time constant of the exponential decay back to the baseline")


class Arrivals(_Model):
    """New conversations per second over the run (a non-homogeneous Poisson process)."""

    baseline_per_s: float = Field(gt=0)
    spike: Spike | None = None

    def rate(self, t: float) -> float:
        """Arrival rate at run time t (conversations per second)."""
        factor = 1.0
        if self.spike is not None and t >= self.spike.at_s:
            s = self.spike
            dt = t - s.at_s
            excess = s.peak_multiplier - 1.0
            factor += excess * dt / s.ramp_s if dt < s.ramp_s else excess * math.exp(-(dt - s.ramp_s) / s.decay_s)
        return self.baseline_per_s * factor

    def peak_rate(self) -> float:
        """The highest rate the process reaches (the thinning bound)."""
        return self.baseline_per_s * (self.spike.peak_multiplier if self.spike else 1.0)


class Range(_Model):
    """A uniform draw between min and max."""

    min: float = Field(ge=0)
    max: float = Field(ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.max < self.min:
            raise ValueError("max must not be below min")
        return self


class Intent(_Model):
    """One kind of question, with what customers write about it in each language.

    Texts with `{order_id}` ask about one order: the schedule draws an order id for the conversation and the run's
    order file holds it, so a bot-first intent can answer from the order lookup.
    """

    weight: float = Field(ge=0)
    texts: dict[str, list[str]]
    # Messages of a chat conversation of this intent (the conversation's range when None).
    messages: Range | None = None

    @property
    def asks_about_an_order(self) -> bool:
        """True when its texts name an order id."""
        return any(ORDER_ID_FIELD in text for lines in self.texts.values() for text in lines)

    @field_validator("texts")
    @classmethod
    def _non_empty(cls, texts: dict[str, list[str]]) -> dict[str, list[str]]:
        if not texts or any(not lines for lines in texts.values()):
            raise ValueError("every language of an intent needs at least one sample text")
        return texts


class HandlingTime(_Model):
    """Handling time of one conversation: lognormal with this mean (seconds) and shape, cut at `max_s`."""

    mean_s: float = Field(gt=0)
    sigma: float = Field(ge=0, default=0.5)
    max_s: float = Field(gt=0)


class Conversations(_Model):
    """How a customer behaves inside one conversation."""

    messages: Range = Range(min=1, max=3)
    think_time_s: Range = Range(min=1, max=5)
    patience_s: float = Field(gt=0, default=180, description="a customer not answered by then counts as abandoned")
    # A phone caller or a widget chat customer not taken by an agent after a draw from this range hangs up (phone
    # `call.ended`) or closes the widget for good; None: they wait until the run ends. E-mail and marketplace IM
    # customers do not leave a queue (the platform reaches them later).
    leave_after_s: Range | None = None
    # Share of the customers the bot answered who then ask for a human, after a think time, with one of these texts.
    ask_human_share: float = Field(ge=0, le=1, default=0.0)
    ask_human_texts: dict[str, list[str]] = Field(
        default_factory=lambda: {"zh": ["转人工", "人工客服"], "en": ["agent please", "I want to talk to a human"]}
    )


class Tenant(_Model):
    """A shop and its agents."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,40}$")
    share: float = Field(gt=0, description="relative share of arrivals")
    agents: int = Field(ge=1)
    # Specialised teams: each a list of skill groups, agents dealt to them in turn. Empty: every agent serves every
    # group (a surge profile's pools then have nothing to widen).
    teams: list[list[str]] = Field(default_factory=list)


class SmallShops(_Model):
    """Many small shops alike: `count` tenants `<prefix>-NN` sharing `share` of arrivals equally."""

    count: int = Field(ge=0)
    prefix: str = Field(default="shop", pattern=r"^[a-z][a-z0-9-]{0,20}$")
    share: float = Field(ge=0)
    agents: int = Field(ge=1, default=2)


class Agents(_Model):
    """How simulated agents work."""

    handling_time: HandlingTime
    accept_delay_s: Range = Range(min=0.2, max=1.5)
    # An agent greets a conversation it got after a draw from `first_reply_s` and answers each later customer
    # message after a draw from `reply_s` (the response times switchboard measures), then closes it when the
    # handling time is over with a last reply.
    first_reply_s: Range = Range(min=0.5, max=3.0)
    reply_s: Range = Range(min=1.0, max=4.0)
    missed_offer_probability: float = Field(ge=0, le=1, default=0.02)
    # What agents write: while they handle a conversation, and last before they close it.
    reply_text: str = Field(min_length=1, default="您好，正在为您查询 / looking into it")
    closing_text: str = Field(min_length=1, default="您好，已为您处理 / done")
    wrap_up_code: str = "resolved"
    # How the shops' routing hands out work: offers to accept (with a timeout) or direct assignment.
    offer_mode: Literal["offer", "auto"] = "offer"
    offer_timeout_s: float = Field(gt=0, default=5.0)
    capacity: dict[str, int] = Field(default_factory=lambda: {"chat": 3, "email": 5, "phone": 1})
    languages: list[str] = Field(default_factory=lambda: ["zh", "en"])


class ShiftChange(_Model):
    """At `at_s` a fraction of each shop's agents log off and as many new ones log on, `overlap_s` before.

    A leaver hands over: sets itself busy, declines new offers, finishes what it holds, logs off. An `abrupt`
    share of leavers just close the desktop with work in hand (a crash, a dead laptop): their conversations must
    go back to the queue and reach another agent.
    """

    at_s: float = Field(ge=0)
    leaving_fraction: float = Field(ge=0, le=1)
    overlap_s: float = Field(ge=0, default=5)
    abrupt_fraction: float = Field(ge=0, le=1, default=0.0)


class Operator(_Model):
    """The operator defines the surge profile (大促模式) of these tenants (all when empty) and switches it on at
    `surge_at_s`: by hand (`activate` at that time) or with a schedule made at the start of the run (presence's
    sweep switches it on at that time and off after the run).

    `definition` is the whole profile (services/switchboard/routing/surge.py: capacity factors, overflow, pools,
    bot_first, customer_updates, response_target_s); without one the profile only multiplies capacity by
    `capacity_multiplier` (what surge profiles were before issue 12).
    """

    surge_at_s: float = Field(ge=0)
    profile: str = "double11"
    capacity_multiplier: float = Field(gt=0, default=1.5)
    tenants: list[str] = Field(default_factory=list)
    switch: Literal["activate", "schedule"] = "activate"
    definition: SurgeProfile | None = None

    @model_validator(mode="after")
    def _one_factor(self) -> Operator:
        if self.definition is not None and "capacity_multiplier" in self.model_fields_set:
            raise ValueError("give the capacity factor once: definition.tenant_factor, not capacity_multiplier")
        return self

    def profile_body(self) -> dict[str, Any]:
        """The profile as the operator API takes it (PUT /surge/profiles/{name})."""
        if self.definition is not None:
            return self.definition.model_dump(mode="json", exclude_defaults=True)
        return {"tenant_factor": self.capacity_multiplier, "description": "load test surge"}

    @property
    def tenant_factor(self) -> float:
        """The capacity factor the profile gives agents without a group factor."""
        return self.definition.tenant_factor if self.definition is not None else self.capacity_multiplier


class Limits(_Model):
    """Hard bounds: the run stops by itself."""

    max_conversations: int = Field(ge=1)
    drain_s: float = Field(gt=0, default=60, description="after the last send, wait this long for deliveries")
    max_run_s: float = Field(gt=0, description="the whole run (arrivals + drain) never exceeds this")


class Scenario(_Model):
    """One load-test scenario."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,40}$")
    description: str = ""
    seed: int = 0
    duration_s: float = Field(gt=0, description="arrivals happen in [0, duration_s)")
    arrivals: Arrivals
    channels: dict[str, float]
    languages: dict[str, float]
    intents: dict[str, Intent]
    conversation: Conversations = Conversations()
    tenants: list[Tenant]
    small_shops: SmallShops | None = None
    agents: Agents
    shift_change: ShiftChange | None = None
    operator: Operator | None = None
    limits: Limits
    # Share of chat conversations that come from a platform's IM webhook (signed POSTs) rather than the widget.
    chat_webhook_share: float = Field(ge=0, le=1, default=0.0)
    # Share of customers who are members of each tier ({"88VIP": 0.1}); the rest have none. The shop vouches for
    # it as in production (docs/chat-widget.md, docs/customer-lookup.md): chat through the widget token's claims or
    # the signed webhook body, e-mail and phone through the customer lookup of the run's order service.
    member_tiers: dict[str, float] = Field(default_factory=dict)
    service_level_targets_s: tuple[float, ...] = (20.0, 180.0)
    # The same response-time yardstick for every run of an A/B (the target in force may differ with the profile).
    response_reference_s: float = Field(gt=0, default=180.0)
    # Merged into every tenant's generated routing config (fixtures.routing): sections such as `bot`, or settings
    # a scenario compresses (patience, response targets). Validated by the routing config model when written.
    routing: dict[str, Any] = Field(default_factory=dict)

    @field_validator("channels", "languages")
    @classmethod
    def _weights(cls, weights: dict[str, float]) -> dict[str, float]:
        if not weights or sum(weights.values()) <= 0 or any(w < 0 for w in weights.values()):
            raise ValueError("a mix needs non-negative weights with a positive sum")
        return weights

    @field_validator("member_tiers")
    @classmethod
    def _tier_shares(cls, shares: dict[str, float]) -> dict[str, float]:
        if any(s < 0 for s in shares.values()) or sum(shares.values()) > 1:
            raise ValueError("tier shares are non-negative and add up to at most 1")
        return shares

    @field_validator("channels")
    @classmethod
    def _known_channels(cls, weights: dict[str, float]) -> dict[str, float]:
        unknown = set(weights) - set(CHANNELS)
        if unknown:
            raise ValueError(f"unknown channels {sorted(unknown)}; known: {', '.join(CHANNELS)}")
        return weights

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        unknown = set(self.intents) - set(INTENTS)
        if unknown:
            raise ValueError(f"unknown intents {sorted(unknown)}; known: {', '.join(INTENTS)}")
        for name, intent in self.intents.items():
            missing = {lang for lang, w in self.languages.items() if w > 0} - set(intent.texts)
            if missing:
                raise ValueError(f"intent {name} has no sample texts in {sorted(missing)}")
        if self.limits.max_run_s < self.duration_s:
            raise ValueError("limits.max_run_s must cover duration_s")
        ids = [t.id for t in self.all_tenants()]
        if len(ids) != len(set(ids)):
            raise ValueError("tenant ids must be unique")
        return self

    def all_tenants(self) -> list[Tenant]:
        """The named tenants plus the small shops, each with its share of arrivals."""
        tenants = list(self.tenants)
        shops = self.small_shops
        if shops is not None and shops.count:
            each = shops.share / shops.count
            tenants += [
                Tenant(id=f"{shops.prefix}-{i:02d}", share=each, agents=shops.agents) for i in range(1, shops.count + 1)
            ]
        return tenants


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A scenario by name (`smoke`, `double11`: config/scenarios/<name>.yaml) or by path to a YAML file."""
    path = Path(name_or_path)
    if not path.suffix:
        path = SCENARIO_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"no scenario file {path}")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a scenario is a YAML mapping")
    return Scenario.model_validate(data)
