"""Routing config: one YAML file per tenant (shop), validated into pydantic models.

A config with an error is rejected with a message that names the file and line of the offending value, so an
operator can fix it from the log line alone; the loader (`reload.py`) keeps the previous config in force.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from switchboard.runtime.yaml_lines import located, yaml_error_line

ChannelName = Literal["chat", "email", "phone"]
ChainStep = Literal["sticky", "returning", "least_loaded", "overflow"]
CHANNELS: tuple[ChannelName, ...] = ("chat", "email", "phone")
# Taobao/Tmall judge shops on the share of customer messages answered within 3 minutes (3分钟响应率).
DEFAULT_RESPONSE_TARGET_S = 180.0
# A target beyond a day is a typo, not a policy.
MAX_RESPONSE_TARGET_S = 86_400.0


# An overflow ring's thresholds beyond a day are typos, not policies.
MAX_RING_S = 86_400.0


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _default_chain() -> list[ChainStep]:
    return ["sticky", "returning", "least_loaded", "overflow"]


def _default_weights() -> dict[ChannelName, int]:
    return {"chat": 2, "email": 1, "phone": 10}


class OverflowRing(_Model):
    """A secondary group that may take a group's conversations once a trigger fires."""

    group: str = Field(max_length=64)
    # Fires for one conversation once it has waited this long (None: never by time); beyond a day is a typo.
    after_s: float | None = Field(default=None, ge=0, le=MAX_RING_S)
    # Fires at decision time when the primary group's estimated wait is above this (None: never).
    estimated_wait_over_s: float | None = Field(default=None, ge=0, le=MAX_RING_S)
    # Fires at decision time when the primary group's recent service level is below this fraction (None: never).
    service_level_below: float | None = Field(default=None, ge=0, le=1)


class OfferPolicy(_Model):
    """Auto-assign, or offer with a push timeout; `max_misses` missed offers in a row set the agent away.

    An agent who declined or missed an offer (or transferred the conversation to a group) is passed over for that
    conversation for `reoffer_after_s` only: after it, they may be offered it again, so a shop whose every agent
    missed it once does not leave it waiting while they have room.
    """

    mode: Literal["auto", "offer"] = "auto"
    timeout_s: float = Field(default=20.0, gt=0)
    max_misses: int = Field(default=3, ge=1)
    reoffer_after_s: float = Field(default=5.0, ge=0)


class SkillLevel(_Model):
    """A bullseye ring of a group: from `after_s` of waiting, agents of at least `min_level` may take a
    conversation (routing/skills.py)."""

    min_level: int = Field(ge=1, le=5)
    after_s: float = Field(default=0.0, ge=0)


class SkillGroup(_Model):
    """A skill group (售前, 售后, 物流 …): the agents who serve it come from presence (`groups`)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    display_name: str = ""
    languages: list[str] = Field(default_factory=lambda: ["zh"])
    channels: list[ChannelName] = Field(default_factory=lambda: list(CHANNELS))
    chain: list[ChainStep] = Field(default_factory=_default_chain)
    overflow: list[OverflowRing] = Field(default_factory=list)
    offer: OfferPolicy | None = None
    # Average handle time, for the estimated wait of the queue.
    avg_handle_s: float = Field(default=300.0, gt=0)
    # Response-time target (customer message -> the agent's next reply) of this group; None: the tenant's.
    response_target_s: float | None = Field(default=None, gt=0, le=MAX_RESPONSE_TARGET_S)
    # Bullseye rings: the minimum proficiency level in force after each wait; they only relax (routing/skills.py).
    skill_levels: list[SkillLevel] = Field(default_factory=list)
    # A conversation in one of `languages` goes only to agents who speak it until it waited this long; given here
    # (a number, or null for never) it overrides the tenant's `skills.language_relax_after_s`.
    language_relax_after_s: float | None = Field(default=None, ge=0)

    @field_validator("languages")
    @classmethod
    def _language_codes(cls, value: list[str]) -> list[str]:
        for code in value:
            if not re.fullmatch(r"[a-z]{2,3}", code):
                raise ValueError(f"language {code!r} is not an ISO 639-1 code in lower case (zh, en, ja ...)")
        return value

    @field_validator("skill_levels")
    @classmethod
    def _rings_relax(cls, value: list[SkillLevel]) -> list[SkillLevel]:
        # Rings that only relax keep an agent eligible once eligible while the conversation waits, which is what
        # lets the sweep's drain be the one place a relaxed ring is acted on.
        if value and value[0].after_s != 0:
            raise ValueError("the first skill level ring applies from the start: after_s 0 (or left out)")
        for before, ring in pairwise(value):
            if ring.after_s <= before.after_s:
                raise ValueError("skill level rings must be in order of after_s, each later than the one before")
            if ring.min_level > before.min_level:
                raise ValueError(
                    f"skill level rings only relax: min_level {ring.min_level} after {ring.after_s:g}s is above "
                    f"{before.min_level}"
                )
        return value

    def takes(self, channel: str) -> bool:
        """Whether the group takes conversations of this channel at all."""
        return channel in self.channels


class Match(_Model):
    """What a rule matches on; every condition given must hold, any value of a list may match.

    Keywords and patterns together are one condition on the text: any keyword or any pattern matches.
    """

    keywords: list[str] = Field(default_factory=list)
    patterns: list[str] = Field(default_factory=list)
    channel: list[ChannelName] = Field(default_factory=list)
    order_status: list[str] = Field(default_factory=list)
    dispute_stage: list[str] = Field(default_factory=list)
    platform: list[str] = Field(default_factory=list)
    category: list[str] = Field(default_factory=list)
    sku_prefix: list[str] = Field(default_factory=list)
    language: list[str] = Field(default_factory=list)
    member_tier: list[str] = Field(default_factory=list)

    @field_validator("patterns")
    @classmethod
    def _patterns_compile(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"bad regular expression {pattern!r}: {exc}") from exc
        return value


class IntentRule(_Model):
    """Maps a conversation's first message and commerce context to a skill group and a priority."""

    name: str
    group: str
    priority: int = 0
    match: Match


class UrgencyBoost(_Model):
    """Anger or urgency words add points to the queue priority."""

    points: int = 0
    words: list[str] = Field(default_factory=list)


class Boosts(_Model):
    """Priority points added on top of the matched rule's priority."""

    channel: dict[ChannelName, int] = Field(default_factory=dict)
    member_tier: dict[str, int] = Field(default_factory=dict)
    urgency: UrgencyBoost = UrgencyBoost()
    dispute_stage: dict[str, int] = Field(default_factory=dict)


class QueuePolicy(_Model):
    """Queue scoring: priority points plus aging (one point per `aging_s_per_point` waited), so nobody starves."""

    aging_s_per_point: float = Field(default=30.0, gt=0)
    boosts: Boosts = Boosts()
    service_level_target_s: float = Field(default=30.0, gt=0)


class Capacity(_Model):
    """Capacity per channel: slots (cap:<channel> from presence) and optionally a weighted-units budget."""

    mode: Literal["slots", "units"] = "slots"
    phone_blocks_other_work: bool = True
    units_per_agent: int = Field(default=10, ge=1)
    unit_weights: dict[ChannelName, int] = Field(default_factory=_default_weights)


class Affinity(_Model):
    """熟客优先: a returning customer goes to the agent who served them last, within the TTL."""

    enabled: bool = True
    ttl_s: int = Field(default=7 * 24 * 3600, ge=1)


class Abandonment(_Model):
    """When a customer who left stops waiting. A caller who hangs up leaves at once (call.ended); a chat customer
    whose widget has been closed this long, with no platform callback to reach them, leaves at the router's next
    sweep (None: chat customers wait however long they are away)."""

    chat_patience_s: float | None = Field(default=None, gt=0)


# What an order lookup answers, as template fields ({status}, {carrier} ...); docs/order-lookup.md defines them.
LOOKUP_FIELDS = frozenset(
    {"order_id", "status", "status_code", "carrier", "tracking_number", "eta", "shipped_at", "paid_at", "item"}
)
# Asking for a person in the first message means no bot at all (转人工 / 人工 / agent / human).
HUMAN_WORDS = ["转人工", "人工", "真人", "agent", "human", "real person"]
# An order id in the text: a run of 6–20 digits (Taobao/Tmall ids are 16–19), not part of a longer number.
ORDER_ID_PATTERN = r"(?<![0-9])[0-9]{6,20}(?![0-9])"


def _bot_channels() -> list[ChannelName]:
    # No phone by default: an answer on a call needs the telephony side to speak it.
    return ["chat", "email"]


def template_fields(template: str) -> list[str]:
    """The field names a bot template fills ({status} → "status"); ValueError on a malformed template."""
    return [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]


class BotTemplates(_Model):
    """A bot answer in Chinese and in English (chosen by the conversation's language), with {fields}."""

    zh: str = Field(min_length=1)
    en: str = Field(min_length=1)


class BotIntent(_Model):
    """A simple intent the bot may answer before queueing (when the active surge profile lists it in `bot_first`).

    `lookup: order` answers from the order lookup (the order id from the message's commerce context or its text,
    else the customer's latest order); `none` answers from the template alone (promotion rules, invoice how-to).
    """

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    match: Match
    lookup: Literal["order", "none"] = "order"
    templates: BotTemplates

    @model_validator(mode="after")
    def _fields_known(self) -> BotIntent:
        for language in ("zh", "en"):
            try:
                names = template_fields(getattr(self.templates, language))
            except ValueError as exc:
                raise ValueError(f"at templates.{language}: malformed template: {exc}") from exc
            for name in names:
                if name not in LOOKUP_FIELDS:
                    known = ", ".join(sorted(LOOKUP_FIELDS))
                    raise ValueError(f"at templates.{language}: unknown field {{{name}}} (known: {known})")
                if self.lookup == "none":
                    raise ValueError(f"at templates.{language}: field {{{name}}} needs `lookup: order`")
        return self


class BotPolicy(_Model):
    """Bot-first answers (智能客服先答): intents, the order lookup's timeout, who is never answered by the bot."""

    intents: list[BotIntent] = Field(default_factory=list)
    # The whole lookup (connect, request, answer) must finish within this; else the conversation is routed.
    lookup_timeout_s: float = Field(default=2.0, gt=0, le=30)
    # The shop's order system (docs/order-lookup.md); "" uses the deployment's SB_ORDER_LOOKUP_URL.
    order_lookup_url: str = Field(default="", pattern=r"^(https?://\S+)?$")
    channels: list[ChannelName] = Field(default_factory=_bot_channels)
    human_words: list[str] = Field(default_factory=lambda: list(HUMAN_WORDS))
    order_id_pattern: str = ORDER_ID_PATTERN
    # A customer who writes again within this after the bot's answer keeps the original arrival time (queue score
    # and waits count from their first message); later, the message is a new arrival.
    followup_s: float = Field(default=1800.0, gt=0)

    @field_validator("order_id_pattern")
    @classmethod
    def _pattern_compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"bad regular expression {value!r}: {exc}") from exc
        return value

    @model_validator(mode="after")
    def _unique(self) -> BotPolicy:
        names = [i.name for i in self.intents]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise ValueError(f"at intents.{i}.name: bot intent {name!r} is defined twice")
        return self

    def intent(self, name: str) -> BotIntent | None:
        """The intent of that name, or None."""
        return next((i for i in self.intents if i.name == name), None)


# Greetings and fillers of a first message (zh, en): no intent in them.
NO_INTENT = [
    "你好", "您好", "你们好", "在吗", "在么", "在不在", "在嘛", "亲", "亲亲", "请问", "客服", "老板", "掌柜",
    "谢谢", "多谢", "好的", "好", "嗯", "嗯嗯", "哦", "噢", "哈喽", "早", "早上好", "晚上好",
    "hello", "hi", "hey", "ok", "okay", "thanks", "thank you",
]  # fmt: skip


class ClassifierPolicy(_Model):
    """The intent classifier (docs/routing.md, "Intent classification"): trained at load from labelled examples,
    it decides a new conversation's group when no rule matched; below `threshold` the conversation goes to the
    default group and the routing event says so."""

    enabled: bool = True
    # The examples file, beside this config; "" means `<config stem>.examples.txt` when that file exists.
    examples: str = Field(default="", pattern=r"^([^/\\]+\.txt)?$")
    # The classifier's probability (among the groups it could choose) below which it does not decide.
    threshold: float = Field(default=0.35, ge=0, le=1)
    # A first message made of these alone (with punctuation, spaces and emoji) says nothing of what the customer
    # wants: the default group takes it without asking the classifier ("你好" must not look like a complaint).
    no_intent: list[str] = Field(default_factory=lambda: list(NO_INTENT))
    # The queue priority of a conversation the classifier put in a group (as a rule's `priority`); a group not
    # named here gets `default_priority`.
    priorities: dict[str, int] = Field(default_factory=dict)


class SkillsPolicy(_Model):
    """Tenant-wide skills settings (routing/skills.py): how much proficiency weighs against load in the least-loaded
    order, and when a conversation's language stops being required of its agent in groups without their own."""

    # The least-loaded heap orders by load - weight * (level - 1) / 4: 0 is pure least-loaded; 0.25 lets a level-5
    # agent go first over a level-1 agent up to a quarter more loaded.
    proficiency_weight: float = Field(default=0.0, ge=0, le=1)
    # None: never (a conversation in a group's language waits for an agent who speaks it).
    language_relax_after_s: float | None = Field(default=None, ge=0)


class TenantRouting(_Model):
    """The whole routing config of one tenant."""

    tenant: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    default_group: str
    default_priority: int = 0
    skill_groups: list[SkillGroup]
    rules: list[IntentRule] = Field(default_factory=list)
    capacity: Capacity = Capacity()
    offers: OfferPolicy = OfferPolicy()
    affinity: Affinity = Affinity()
    queue: QueuePolicy = QueuePolicy()
    offline_grace_s: float = Field(default=60.0, ge=0)
    abandonment: Abandonment = Abandonment()
    bot: BotPolicy = BotPolicy()
    # The response-time target of groups without their own (docs/desk-config.md, "Response time").
    response_target_s: float = Field(default=DEFAULT_RESPONSE_TARGET_S, gt=0, le=MAX_RESPONSE_TARGET_S)
    classifier: ClassifierPolicy = ClassifierPolicy()
    # The default group per channel where `default_group` does not take that channel (a phone call when the
    # default group is chat and e-mail only).
    default_groups: dict[ChannelName, str] = Field(default_factory=dict)
    # The intent classifier trained from the examples file (routing/intent.py), attached by the router's loader;
    # None when the config has none. Kept by model_copy, so the surge-effective copy classifies the same way.
    _intent: Any = PrivateAttr(default=None)
    # Proficiency weight and the language relax default (routing/skills.py).
    skills: SkillsPolicy = SkillsPolicy()

    @model_validator(mode="after")
    def _references(self) -> TenantRouting:
        names = [g.name for g in self.skill_groups]
        if len(set(names)) != len(names):
            raise ValueError(f"at skill_groups: skill group names must be unique: {names}")
        known = set(names)
        if self.default_group not in known:
            raise ValueError(f"at default_group: {self.default_group!r} is not a skill group")
        for i, rule in enumerate(self.rules):
            if rule.group not in known:
                raise ValueError(f"at rules.{i}.group: rule {rule.name!r} names unknown group {rule.group!r}")
        for i, group in enumerate(self.skill_groups):
            for j, ring in enumerate(group.overflow):
                if ring.group not in known or ring.group == group.name:
                    raise ValueError(
                        f"at skill_groups.{i}.overflow.{j}.group: {group.name!r} overflows to unknown group "
                        f"{ring.group!r}"
                    )
        return self._defaults(known)

    def _defaults(self, known: set[str]) -> TenantRouting:
        for name in self.classifier.priorities:
            if name not in known:
                raise ValueError(f"at classifier.priorities.{name}: {name!r} is not a skill group")
        for channel, name in self.default_groups.items():
            if name not in known:
                raise ValueError(f"at default_groups.{channel}: {name!r} is not a skill group")
        for channel in CHANNELS:
            default = self.default_for(channel)
            if any(g.takes(channel) for g in self.skill_groups) and not self.group(default).takes(channel):
                where = f"default_groups.{channel}" if channel in self.default_groups else "default_group"
                raise ValueError(
                    f"at {where}: the default group of {channel} ({default!r}) does not take {channel}; name one "
                    f"that does under default_groups.{channel}"
                )
        return self

    def default_for(self, channel: str) -> str:
        """The default group of a channel: `default_groups`' entry, else `default_group`."""
        return self.default_groups.get(channel, self.default_group)  # type: ignore[call-overload, no-any-return]

    def takes(self, group: str, channel: str) -> bool:
        """True when the group takes conversations of that channel (an unknown group takes none)."""
        return any(g.name == group and g.takes(channel) for g in self.skill_groups)

    def group(self, name: str) -> SkillGroup:
        """The skill group of that name (KeyError if unknown)."""
        for group in self.skill_groups:
            if group.name == name:
                return group
        raise KeyError(name)

    def response_target(self, group: str, overrides: Mapping[str, float] | None = None) -> float:
        """The response-time target in force for `group`, in seconds: the active surge profile's (`overrides`,
        its `response_target_s`), else the group's own, else the tenant's (also for a group this config lacks).
        The one rule every reader of the target goes through (gateway responses, desk timer, board)."""
        if overrides and group in overrides:
            return float(overrides[group])
        for candidate in self.skill_groups:
            if candidate.name == group and candidate.response_target_s is not None:
                return candidate.response_target_s
        return self.response_target_s

    def offer_policy(self, group: str) -> OfferPolicy:
        """The group's offer policy, or the tenant's."""
        return self.group(group).offer or self.offers


class ConfigError(ValueError):
    """A routing config file cannot be taken; the message points at file:line."""


def parse_config(text: str, source: str) -> TenantRouting:
    """Parse and validate one tenant's config; raise ConfigError naming `source:line` on any error."""
    try:
        node = yaml.compose(text)
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}:{yaml_error_line(exc)}: not valid YAML: {getattr(exc, 'problem', exc)}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{source}:1: a routing config is a mapping with tenant, skill_groups and rules")
    try:
        return TenantRouting.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(located(exc, node, source)) from exc


def load_config_file(path: Path) -> TenantRouting:
    """Read and validate one config file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}:1: cannot read: {exc}") from exc
    return parse_config(text, str(path))
