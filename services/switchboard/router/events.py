"""RoutingEvents from the decisions the claim scripts return: every decision, with its reasons."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence

from google.protobuf.timestamp_pb2 import Timestamp

from switchboard.contracts import CandidateVerdict, Channel, RoutingEvent, RoutingEventType
from switchboard.router.contract import Decision
from switchboard.routing.chain import Verdict
from switchboard.routing.scoring import effective_priority
from switchboard.routing.skills import Requirement

CHANNEL_NAMES = {Channel.CHANNEL_CHAT: "chat", Channel.CHANNEL_EMAIL: "email", Channel.CHANNEL_PHONE: "phone"}
CHANNELS_BY_NAME = {name: value for value, name in CHANNEL_NAMES.items()}

TYPES = {
    "queued": RoutingEventType.ROUTING_EVENT_QUEUED,
    "offered": RoutingEventType.ROUTING_EVENT_OFFERED,
    "assigned": RoutingEventType.ROUTING_EVENT_ASSIGNED,
    "accepted": RoutingEventType.ROUTING_EVENT_ACCEPTED,
    "declined": RoutingEventType.ROUTING_EVENT_DECLINED,
    "timed_out": RoutingEventType.ROUTING_EVENT_TIMED_OUT,
    "requeued": RoutingEventType.ROUTING_EVENT_REQUEUED,
    "transferred": RoutingEventType.ROUTING_EVENT_TRANSFERRED,
    "closed": RoutingEventType.ROUTING_EVENT_CLOSED,
    "delivered": RoutingEventType.ROUTING_EVENT_MESSAGE_DELIVERED,
    "abandoned": RoutingEventType.ROUTING_EVENT_ABANDONED,
    "answered_by_bot": RoutingEventType.ROUTING_EVENT_ANSWERED_BY_BOT,
}


def _ts(ms: float) -> Timestamp:
    ts = Timestamp()
    ts.FromMilliseconds(int(ms))
    return ts


def _verdict(v: Verdict) -> CandidateVerdict:
    return CandidateVerdict(
        agent_id=v.agent_id, skill_group=v.group, step=v.step, reason=v.reason, load=round(v.load, 3)
    )


def routing_event(
    tenant: str,
    decision: Decision,
    *,
    now_ms: int,
    instance: str,
    aging_s_per_point: float,
    verdicts: Sequence[Verdict] = (),
    reasons: Sequence[str] = (),
    need: Requirement | None = None,
    language: str = "",
) -> RoutingEvent | None:
    """The RoutingEvent of one decision, or None for decisions that are not events (held, refused); `need`: what
    the deciding group asked of its agents then (level ring, language relaxed), named on the event and its reasons."""
    d = decision
    if d.type not in TYPES:
        return None
    event = RoutingEvent(
        event_id=uuid.uuid4().hex,
        tenant_id=tenant,
        conversation_id=d.conv,
        type=TYPES[d.type],
        at=_ts(now_ms),
        skill_group=d.group,
        agent_id=d.agent,
        epoch=d.epoch,
        priority=d.prio,
        rule_matched=d.rule,
        message_id=d.mid,
        channel=CHANNELS_BY_NAME.get(d.channel, Channel.CHANNEL_UNSPECIFIED),
        wrap_up_code=d.wrap,
        decline_reason=d.reason if d.type == "declined" else "",
        transfer_to_agent=d.to_agent,
        transfer_to_group=d.to_group,
        router_instance=instance,
        queue_position=d.pos,
        previous_agent_id=d.prev,
        classified_by=d.by,
        confidence=d.conf,
        classified_rule=d.crule,
        language=language,
    )
    event.candidates.extend(_verdict(v) for v in verdicts)
    if d.step:
        event.candidates.append(
            CandidateVerdict(agent_id=d.agent, skill_group=d.group, step=d.step, chosen=True, reason=f"chosen:{d.step}")
        )
    if d.enq:
        event.enqueued_at.CopyFrom(_ts(d.enq))
        event.score = effective_priority(int(d.enq), d.prio, aging_s_per_point, now_ms)
    if d.deadline:
        event.offer_deadline.CopyFrom(_ts(d.deadline))
    event.reasons.extend(reasons)
    if need is not None:
        event.min_level = need.min_level
        event.language_relaxed = need.relaxed
        event.reasons.extend(need.reasons())
    if d.overflow:
        event.reasons.append(d.reason or f"overflow:{d.overflow}:waited")
    if d.type == "timed_out" and d.away:
        event.reasons.append("agent_set_away:missed_offers")
    if d.type == "abandoned":
        event.wait_ms = d.wait
        event.reasons.append(f"abandoned:{d.reason}")
    if d.tpl:
        event.bot_template = d.tpl
        event.lookup.update(json.loads(d.lookup or "{}"))
    return event
