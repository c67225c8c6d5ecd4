"""Classification: a conversation's first message and commerce context → skill group, priority, and the rule.

Pure functions over plain data. Rules are tried in config order and the first whose conditions all hold wins
(a rule whose group does not take the message's channel is skipped); with none, the tenant's intent classifier
(routing/intent.py) names a group with its confidence, among the groups that take the channel and, when any of
them serves the message's language, among those; below the classifier's threshold, or without a classifier,
the channel's default group. Priority boosts (channel, VIP tier, anger/urgency words, dispute stage) are added
on top of the rule's priority.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cached_property, lru_cache

from switchboard.routing.config import Match, SkillGroup, TenantRouting
from switchboard.routing.intent import IntentModel


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
    """The skill group and priority of a conversation, with the rule and boosts that decided them.

    `by`: what decided the group: "rule" (`rule` names it), "classifier" (`rule` is "classifier"), "default" (no
    rule and no classifier), "low_confidence" (the classifier's best was below the threshold: the default group).
    `confidence`: the classifier's probability for its best group (0 when it was not asked).
    """

    group: str
    priority: int
    rule: str
    boosts: tuple[str, ...] = field(default_factory=tuple)
    by: str = "rule"
    confidence: float = 0.0


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


def intent_model(config: TenantRouting) -> IntentModel | None:
    """The tenant's trained intent classifier, or None (none configured, disabled, or not attached)."""
    model = config._intent
    return model if isinstance(model, IntentModel) and config.classifier.enabled else None


def candidate_groups(config: TenantRouting, facts: Facts) -> list[str]:
    """The groups the classifier may choose for a message: those that take its channel and, when any of them
    serves its language, only those (a Japanese message prefers a group that serves Japanese)."""
    taking = [g for g in config.skill_groups if g.takes(facts.channel)]
    return _speaking(taking, facts.language) or [g.name for g in taking]


def _speaking(groups: list[SkillGroup], language: str) -> list[str]:
    """The names of the groups that serve the language (none when it is not known)."""
    return [g.name for g in groups if language and language in g.languages]


def fallback_group(config: TenantRouting, facts: Facts, ranked: list[str]) -> str:
    """The group of a message no rule and no confident classifier decided: the channel's default group, unless
    another group taking the channel serves the message's language and the default does not; then the best
    of `ranked` (the classifier's order of the groups that serve it), else the first such group in config order."""
    default = config.default_for(facts.channel)
    if not facts.language or facts.language in config.group(default).languages:
        return default
    speaking = _speaking([g for g in config.skill_groups if g.takes(facts.channel)], facts.language)
    if not speaking:
        return default
    return next((g for g in ranked if g in speaking), speaking[0])


@lru_cache(maxsize=64)
def _no_intent(phrases: tuple[str, ...]) -> re.Pattern[str]:
    # Longest first, so "你们好" goes whole before "好"; then anything that is not a letter or Han (an order
    # number alone says which order, not what about it).
    words = sorted({p.casefold() for p in phrases if p}, key=len, reverse=True)
    return re.compile("|".join([*(re.escape(w) for w in words), r"[\W_0-9]+"]))


def without_intent(config: TenantRouting, text: str) -> bool:
    """True when the text is only greetings and fillers (`classifier.no_intent`), punctuation, spaces or emoji."""
    return not _no_intent(tuple(config.classifier.no_intent)).sub("", text.casefold())


def decide(config: TenantRouting, facts: Facts) -> Classification:
    """The group, priority (without boosts), rule name, what decided and the classifier's confidence."""
    for rule in config.rules:
        if config.takes(rule.group, facts.channel) and matches(rule.match, facts):
            return Classification(rule.group, rule.priority, rule.name)
    model = intent_model(config)
    if model is not None and without_intent(config, facts.text):
        return Classification(fallback_group(config, facts, []), config.default_priority, "no_intent", by="default")
    found = None if model is None else model.predict(facts.text, candidate_groups(config, facts))
    if found is None:
        return Classification(fallback_group(config, facts, []), config.default_priority, "default", by="default")
    confidence = round(found.confidence, 4)
    if found.confidence >= config.classifier.threshold:
        priority = config.classifier.priorities.get(found.group, config.default_priority)
        return Classification(found.group, priority, "classifier", by="classifier", confidence=confidence)
    group = fallback_group(config, facts, [found.group])
    return Classification(group, config.default_priority, "default", by="low_confidence", confidence=confidence)


def classify(config: TenantRouting, facts: Facts) -> Classification:
    """The first matching rule's group and priority plus boosts; else the classifier's group; else the channel's
    default group (both with the default priority)."""
    extra, reasons = boosts(config, facts)
    decided = decide(config, facts)
    return replace(decided, priority=decided.priority + extra, boosts=reasons)
