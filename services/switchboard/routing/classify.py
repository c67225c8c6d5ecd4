"""Classification: a conversation's first message and commerce context → skill group, priority, and the rule.

Pure functions over plain data. Rules are tried in config order and the first whose conditions all hold wins;
priority boosts (channel, VIP tier, anger/urgency words, dispute stage) are added on top of the rule's priority.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property, lru_cache

from switchboard.routing.config import Match, TenantRouting


@dataclass(frozen=True)
class Facts:
    """What routing knows of a conversation when it arrives."""

    text: str = ""
    channel: str = "chat"
    language: str = ""
    member_tier: str = ""
    order_status: str = ""
    dispute_stage: str = ""
    platform: str = ""
    category: str = ""
    sku: str = ""

    @cached_property
    def folded(self) -> str:
        """The text case-folded once, for keyword matching."""
        return self.text.casefold()


@dataclass(frozen=True)
class Classification:
    """The skill group and priority of a conversation, with the rule and boosts that decided them."""

    group: str
    priority: int
    rule: str
    boosts: tuple[str, ...] = field(default_factory=tuple)


@lru_cache(maxsize=4096)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


def _contains_any(text: str, words: list[str]) -> bool:
    # Chinese has no word boundaries, so a keyword matches as a substring; English is compared case-folded.
    folded = text.casefold()
    return any(word.casefold() in folded for word in words)


def _predicate(match: Match) -> Callable[[Facts], bool]:
    """Compile a rule's conditions once: the checks of the conditions it gives, all of which must hold."""
    checks: list[Callable[[Facts], bool]] = []
    words = [w.casefold() for w in match.keywords]
    patterns = [_compiled(p) for p in match.patterns]
    if words or patterns:
        checks.append(lambda f: any(w in f.folded for w in words) or any(p.search(f.text) for p in patterns))
    for field_name, values in (
        ("channel", match.channel),
        ("order_status", match.order_status),
        ("dispute_stage", match.dispute_stage),
        ("platform", match.platform),
        ("category", match.category),
        ("language", match.language),
        ("member_tier", match.member_tier),
    ):
        if values:
            allowed = frozenset(values)
            checks.append(lambda f, name=field_name, allowed=allowed: getattr(f, name) in allowed)  # type: ignore[misc]
    if match.sku_prefix:
        prefixes = tuple(match.sku_prefix)
        checks.append(lambda f: bool(f.sku) and f.sku.startswith(prefixes))
    return lambda f: bool(checks) and all(check(f) for check in checks)


# Compiled rules by the identity of their Match (configs are immutable; a reload makes new objects).
_PREDICATES: dict[int, tuple[Match, Callable[[Facts], bool]]] = {}


def matches(match: Match, facts: Facts) -> bool:
    """True when every condition the rule gives holds for the facts (keywords or patterns count as one)."""
    cached = _PREDICATES.get(id(match))
    if cached is None or cached[0] is not match:
        if len(_PREDICATES) > 10_000:
            _PREDICATES.clear()
        cached = _PREDICATES[id(match)] = (match, _predicate(match))
    return cached[1](facts)


def boosts(config: TenantRouting, facts: Facts) -> tuple[int, tuple[str, ...]]:
    """Priority points from the tenant's boosts, and a reason per boost applied."""
    policy = config.queue.boosts
    points, reasons = 0, []
    value = policy.channel.get(facts.channel, 0)  # type: ignore[call-overload]
    if value:
        points += value
        reasons.append(f"channel:{facts.channel}+{value}")
    if facts.member_tier and policy.member_tier.get(facts.member_tier):
        value = policy.member_tier[facts.member_tier]
        points += value
        reasons.append(f"tier:{facts.member_tier}+{value}")
    if policy.urgency.points and _contains_any(facts.text, policy.urgency.words):
        points += policy.urgency.points
        reasons.append(f"urgency+{policy.urgency.points}")
    if facts.dispute_stage and policy.dispute_stage.get(facts.dispute_stage):
        value = policy.dispute_stage[facts.dispute_stage]
        points += value
        reasons.append(f"dispute:{facts.dispute_stage}+{value}")
    return points, tuple(reasons)


def classify(config: TenantRouting, facts: Facts) -> Classification:
    """The first matching rule's group and priority plus boosts; the tenant's default group when none matches."""
    extra, reasons = boosts(config, facts)
    for rule in config.rules:
        if matches(rule.match, facts):
            return Classification(rule.group, rule.priority + extra, rule.name, reasons)
    return Classification(config.default_group, config.default_priority + extra, "default", reasons)
