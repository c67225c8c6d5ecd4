"""The service a run gave, from switchboard's own routing events (sb.routing.v1): deflection, abandonment,
service level and response time. Pure functions over the events the probe kept (no I/O).

Definitions (docs/loadtest.md says the same):
- *deflected*: a conversation the bot answered (ANSWERED_BY_BOT) and never routed to an agent afterwards (no
  queued, offered, assigned, accepted, requeued or transferred decision after the bot's answer). A conversation the
  bot answered and that was routed after all (转人工, a second message, a failed lookup) is *escalated*.
- *needed an agent*: every conversation with a routing decision that is not deflected. That is the denominator of
  service level and abandonment rate: a deflected conversation never waited for an agent.
- *answered*: the first ASSIGNED or ACCEPTED decision; its wait counts from the conversation's original arrival
  (`enqueued_at`, kept through a bot answer and a requeue).
- *abandoned*: an ABANDONED decision (the caller hung up, the chat customer left) and never answered (a chat
  customer who came back and was answered counts as answered); its wait is the event's `wait_ms`.
- *service level within T*: answered within T over all that needed an agent — abandoned ones and those still
  waiting at the end included, as contact-center practice defines it.
- *response time*: RESPONDED decisions, customer message → the agent's next reply (`response_ms`); the first one
  of each conversation (`first_response`) apart; share within the target in force (`response_target_s` of the
  event) and within the scenario's reference target (the same yardstick for both runs of an A/B).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from switchboard_tools.loadgen.stats import percentile

# Decisions that hand a conversation to agents (the queue or one agent): after a bot answer, it was not deflected.
ROUTED_TO_AGENTS = frozenset({"queued", "offered", "assigned", "accepted", "requeued", "transferred"})
OWNED = frozenset({"assigned", "accepted"})


@dataclass(frozen=True)
class EventRecord:
    """One routing event of the run, reduced to what the figures read (times in seconds since the epoch)."""

    conversation_id: str
    type: str
    at: float
    channel: str = ""
    group: str = ""
    agent_id: str = ""
    enqueued_at: float | None = None
    wait_ms: int = 0
    response_ms: int = 0
    first_response: bool = False
    response_target_s: float = 0.0
    bot_template: str = ""
    surge_profile: str = ""


def histories(events: Iterable[EventRecord]) -> dict[str, list[EventRecord]]:
    """Each conversation's events in the order they were read (the routing topic is keyed by conversation, so
    one conversation's events keep the order the router wrote them)."""
    result: dict[str, list[EventRecord]] = defaultdict(list)
    for event in events:
        result[event.conversation_id].append(event)
    return dict(result)


def is_deflected(history: Sequence[EventRecord]) -> bool:
    """Answered by the bot and never routed to an agent after the first bot answer."""
    first = next((i for i, e in enumerate(history) if e.type == "answered_by_bot"), None)
    if first is None:
        return False
    return not any(e.type in ROUTED_TO_AGENTS for e in history[first + 1 :])


def deflection(convs: Mapping[str, Sequence[EventRecord]]) -> dict[str, object]:
    """Bot answers: how many conversations the bot answered, how many of those it deflected, by template."""
    answered = {cid: h for cid, h in convs.items() if any(e.type == "answered_by_bot" for e in h)}
    deflected = [cid for cid, h in answered.items() if is_deflected(h)]
    templates: Counter[str] = Counter()
    for h in answered.values():
        templates[next(e.bot_template for e in h if e.type == "answered_by_bot") or "?"] += 1
    total = len(convs)
    return {
        "conversations": total,
        "answered_by_bot": len(answered),
        "deflected": len(deflected),
        "escalated_after_bot": len(answered) - len(deflected),
        "deflection_rate": len(deflected) / total if total else math.nan,
        "by_template": dict(sorted(templates.items())),
    }


@dataclass(frozen=True)
class Outcome:
    """One conversation that needed an agent: its channel, arrival, answer or abandonment."""

    conversation_id: str
    channel: str
    arrived_at: float
    answered_at: float | None
    abandoned_wait_s: float | None

    @property
    def wait_s(self) -> float | None:
        """Arrival → first answer; None when never answered."""
        return None if self.answered_at is None else max(0.0, self.answered_at - self.arrived_at)


def outcome(conversation_id: str, history: Sequence[EventRecord]) -> Outcome | None:
    """How a conversation that needed an agent went; None when it did not (deflected, or no routing at all)."""
    if not history or is_deflected(history):
        return None
    enqueued = [e.enqueued_at for e in history if e.enqueued_at]
    arrived = min(enqueued) if enqueued else history[0].at
    channel = next((e.channel for e in history if e.channel), "")
    answered_at = next((e.at for e in history if e.type in OWNED), None)
    # A chat customer who left and came back to write is routed again: answered after all, not abandoned.
    left = [e for e in history if e.type == "abandoned"]
    abandoned = None
    if answered_at is None and left:
        last = left[-1]
        abandoned = last.wait_ms / 1000 if last.wait_ms else max(0.0, last.at - arrived)
    return Outcome(conversation_id, channel, arrived, answered_at, abandoned)


def needing_agents(convs: Mapping[str, Sequence[EventRecord]]) -> list[Outcome]:
    """The outcome of every conversation that needed an agent."""
    return [o for cid, h in sorted(convs.items()) if (o := outcome(cid, h)) is not None]


def _waits(values: Sequence[float]) -> dict[str, float]:
    return {
        "wait_mean_s": sum(values) / len(values) if values else math.nan,
        "wait_p50_s": percentile(values, 50),
        "wait_p90_s": percentile(values, 90),
        "wait_max_s": max(values) if values else math.nan,
    }


def service_level(outcomes: Sequence[Outcome], targets_s: Sequence[float]) -> dict[str, float]:
    """Answered within each target over all that needed an agent (abandoned and still waiting included), ASA."""
    total = len(outcomes)
    waits = [w for o in outcomes if (w := o.wait_s) is not None]
    abandoned = sum(1 for o in outcomes if o.abandoned_wait_s is not None)
    result = {
        "needed_agent": float(total),
        "answered": float(len(waits)),
        "abandoned": float(abandoned),
        "unanswered_at_end": float(total - len(waits) - abandoned),
        "asa_s": sum(waits) / len(waits) if waits else math.nan,
        "answer_wait_p90_s": percentile(waits, 90),
    }
    for target in targets_s:
        within = sum(1 for w in waits if w <= target)
        result[f"service_level_{target:g}s"] = within / total if total else math.nan
    return result


def abandonment(outcomes: Sequence[Outcome]) -> dict[str, dict[str, float]]:
    """ABANDONED conversations per channel (and all), with their rate over those that needed an agent, and waits."""
    by_channel: dict[str, list[Outcome]] = defaultdict(list)
    for o in outcomes:
        by_channel[o.channel or "?"].append(o)
    result = {}
    for channel, group in [("all", list(outcomes)), *sorted(by_channel.items())]:
        waits = [w for o in group if (w := o.abandoned_wait_s) is not None]
        result[channel] = {
            "needed_agent": float(len(group)),
            "abandoned": float(len(waits)),
            "abandonment_rate": len(waits) / len(group) if group else math.nan,
            **_waits(waits),
        }
    return result


def _responses(events: Sequence[EventRecord], reference_s: float) -> dict[str, float]:
    values = [e.response_ms / 1000 for e in events]
    in_force = [e for e in events if e.response_target_s > 0]
    return {
        "count": float(len(values)),
        "mean_s": sum(values) / len(values) if values else math.nan,
        "p50_s": percentile(values, 50),
        "p90_s": percentile(values, 90),
        "within_target_in_force": (
            sum(1 for e in in_force if e.response_ms <= e.response_target_s * 1000) / len(in_force)
            if in_force
            else math.nan
        ),
        f"within_{reference_s:g}s": sum(1 for v in values if v <= reference_s) / len(values) if values else math.nan,
    }


def response_times(events: Iterable[EventRecord], reference_s: float) -> dict[str, object]:
    """RESPONDED events: first responses and all responses, overall and per group, with the targets in force."""
    responded = [e for e in events if e.type == "responded"]
    first = [e for e in responded if e.first_response]
    by_group: dict[str, list[EventRecord]] = defaultdict(list)
    for e in first:
        by_group[e.group or "?"].append(e)
    targets = sorted({e.response_target_s for e in responded if e.response_target_s > 0})
    return {
        "reference_target_s": reference_s,
        "targets_in_force_s": targets,
        "first": _responses(first, reference_s),
        "all": _responses(responded, reference_s),
        "first_by_group": {g: _responses(group, reference_s) for g, group in sorted(by_group.items())},
    }


def service_figures(
    events: Sequence[EventRecord], targets_s: Sequence[float], response_reference_s: float
) -> dict[str, object]:
    """Every figure of this module for one run (the report's `service` section)."""
    convs = histories(events)
    outcomes = needing_agents(convs)
    present = Counter(e.type for e in events)
    missing = [name for name in ("answered_by_bot", "abandoned", "responded") if not present[name]]
    return {
        "deflection": deflection(convs),
        "service_level": service_level(outcomes, targets_s),
        "abandonment": abandonment(outcomes),
        "response": response_times(events, response_reference_s),
        "surge_profiles_seen": sorted({e.surge_profile for e in events if e.surge_profile}),
        # Event types this run saw none of: either nothing happened, or the stack does not emit them yet.
        "no_events_of": missing,
    }
