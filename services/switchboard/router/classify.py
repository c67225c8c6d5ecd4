"""Classification: a conversation's first message and commerce context → skill group, priority, and the rule.

Pure functions over plain data. Rules are tried in config order and the first whose conditions all hold wins;
priority boosts (channel, VIP tier, anger/urgency words, dispute stage) are added on top of the rule's priority.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from switchboard.router.config import Match, TenantRouting


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


def matches(match: Match, facts: Facts) -> bool:
    """True when every condition the rule gives holds for the facts."""
    checks: list[tuple[Sequence[str], Callable[[], bool]]] = [
        (
            [*match.keywords, *match.patterns],
            lambda: (
                _contains_any(facts.text, match.keywords)
                or any(_compiled(p).search(facts.text) for p in match.patterns)
            ),
        ),
        (match.channel, lambda: facts.channel in match.channel),
        (match.order_status, lambda: facts.order_status in match.order_status),
        (match.dispute_stage, lambda: facts.dispute_stage in match.dispute_stage),
        (match.platform, lambda: facts.platform in match.platform),
        (match.category, lambda: facts.category in match.category),
        (match.sku_prefix, lambda: any(facts.sku.startswith(p) for p in match.sku_prefix if facts.sku)),
        (match.language, lambda: facts.language in match.language),
        (match.member_tier, lambda: facts.member_tier in match.member_tier),
    ]
    given = [check for values, check in checks if values]
    return bool(given) and all(check() for check in given)


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
