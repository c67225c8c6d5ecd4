"""RoutingEvents from the decisions the claim scripts return: every decision, with its reasons."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from switchboard.contracts import CandidateVerdict, Channel, RoutingEvent, RoutingEventType
from switchboard.router.chain import Verdict
from switchboard.router.scoring import effective_priority

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
}


def _ts(ms: float) -> Timestamp:
    ts = Timestamp()
    ts.FromMilliseconds(int(ms))
    return ts


def _verdicts(raw: Any) -> list[CandidateVerdict]:
    if not isinstance(raw, list):
        return []
    return [
        CandidateVerdict(
            agent_id=str(v.get("a", "")),
            skill_group=str(v.get("g", "")),
            step=str(v.get("s", "")),
            reason=str(v.get("r", "")),
            load=float(v.get("l", 0.0)),
        )
        for v in raw
        if isinstance(v, Mapping)
    ]


def verdicts_json(verdicts: Sequence[Verdict]) -> list[dict[str, Any]]:
    """The planner's verdicts in the compact form the scripts pass through."""
    return [{"a": v.agent_id, "g": v.group, "s": v.step, "r": v.reason, "l": round(v.load, 3)} for v in verdicts]


def routing_event(
    tenant: str, decision: Mapping[str, Any], *, now_ms: int, instance: str, aging_s_per_point: float
) -> RoutingEvent | None:
    """The RoutingEvent of one decision, or None for decisions that are not events (held, refused)."""
    kind = str(decision.get("type", ""))
    if kind not in TYPES:
        return None
    event = RoutingEvent(
        event_id=uuid.uuid4().hex,
        tenant_id=tenant,
        conversation_id=str(decision.get("conv", "")),
        type=TYPES[kind],
        at=_ts(now_ms),
        skill_group=str(decision.get("group") or ""),
        agent_id=str(decision.get("agent") or ""),
        epoch=int(decision.get("epoch") or 0),
        priority=int(decision.get("prio") or 0),
        rule_matched=str(decision.get("rule") or ""),
        message_id=str(decision.get("mid") or ""),
        channel=CHANNELS_BY_NAME.get(str(decision.get("channel") or ""), Channel.CHANNEL_UNSPECIFIED),
        wrap_up_code=str(decision.get("wrap") or ""),
        decline_reason=str(decision.get("reason") or "") if kind == "declined" else "",
        transfer_to_agent=str(decision.get("to_agent") or ""),
        transfer_to_group=str(decision.get("to_group") or ""),
        router_instance=instance,
        queue_position=int(decision.get("pos") or 0),
        previous_agent_id=str(decision.get("prev") or ""),
    )
    event.candidates.extend(_verdicts(decision.get("verdicts")))
    if decision.get("step"):
        event.candidates.append(
            CandidateVerdict(
                agent_id=event.agent_id,
                skill_group=event.skill_group,
                step=str(decision["step"]),
                chosen=True,
                reason=f"chosen:{decision['step']}",
            )
        )
    if decision.get("enq"):
        enq = float(decision["enq"])
        event.enqueued_at.CopyFrom(_ts(enq))
        event.score = effective_priority(int(enq), event.priority, aging_s_per_point, now_ms)
    if decision.get("deadline"):
        event.offer_deadline.CopyFrom(_ts(float(decision["deadline"])))
    for reason in decision.get("reasons") or []:
        event.reasons.append(str(reason))
    if decision.get("overflow"):
        event.reasons.append(f"overflow:{decision['overflow']}:waited")
    if kind == "timed_out" and decision.get("away"):
        event.reasons.append("agent_set_away:missed_offers")
    return event
