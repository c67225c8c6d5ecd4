"""Pure functions from phone items to InboundMessages, and the order rule for a call's items.

A call is one conversation: its id is derived from tenant and call id, so every replica and every retry agrees.
Provider ids (the idempotency ids) are per (call, event type) for lifecycle events and per (call, segment seq)
for final segments; a post-call transcript has its own namespace per cue position.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from google.protobuf.timestamp_pb2 import Timestamp

from switchboard.contracts import CallEvent, Channel, InboundMessage, MessageKind, PhoneDetail
from switchboard.intake.ids import stable_id
from switchboard.intake.language import detect_language
from switchboard.phone.wire import CallAnswered, CallEnded, CallIvr, CallStarted, PhoneItem, Segment, speaker_of
from switchboard.runtime.pii import mask_phone_number

EVENTS: dict[str, int] = {
    "call.started": CallEvent.CALL_EVENT_STARTED,
    "call.ivr": CallEvent.CALL_EVENT_IVR,
    "call.answered": CallEvent.CALL_EVENT_ANSWERED,
    "call.ended": CallEvent.CALL_EVENT_ENDED,
}
# Within one delivery a call's items are put in lifecycle order; final segments sort among themselves by seq.
_RANK = {"call.started": 0, "call.ivr": 1, "call.answered": 2, "segment": 3, "call.ended": 4}
# Every phone record tells the router: route at once, highest priority, and the call takes a whole phone slot.
PHONE_ROUTING = {"priority": "phone", "route": "immediate", "capacity": "phone_slot"}


@dataclass(frozen=True)
class CallState:
    """What the adapter remembers of a call (the Redis hash `keys.phone_call`)."""

    conversation_id: str
    customer_id: str
    caller_masked: str
    dialled_number: str
    language: str
    ivr_choice: str = ""
    # From the shop's customer lookup at call start (intake/customers.py); "" when there is none.
    member_tier: str = ""
    tier_source: str = ""


def conversation_id(tenant_id: str, call_id: str) -> str:
    """The conversation of a call."""
    return "call-" + stable_id(tenant_id, "phone", call_id)


def call_language(tag: str) -> str:
    """A platform's language tag ("zh-CN", "cmn-Hans", "yue", "en-US", "ja-JP") as an ISO 639-1 code ("" if none)."""
    primary = re.split(r"[-_]", tag.strip().lower(), maxsplit=1)[0]
    if primary in ("zh", "cmn", "yue", "wuu"):  # Mandarin, Cantonese and Wu are written Chinese
        return "zh"
    return primary if re.fullmatch(r"[a-z]{2}", primary) else ""


def caller_customer_id(tenant_id: str, caller: str, id_key: bytes = b"") -> str:
    """A caller's customer id: the same number at the same shop is the same customer (熟客优先 works by it).

    With `id_key` (a deployment secret) it is a keyed hash, which cannot be reversed by trying every mobile number.
    """
    digits = re.sub(r"[^0-9]", "", unicodedata.normalize("NFKC", caller))[-11:]  # full-width digits too
    if not id_key:
        return stable_id(tenant_id, "phone", digits)
    return hmac.new(id_key, f"{tenant_id}\x1fphone\x1f{digits}".encode(), hashlib.sha256).hexdigest()[:24]


def new_call(tenant_id: str, started: CallStarted, hotline_language: str = "", id_key: bytes = b"") -> CallState:
    """The state of a call from its started event (the caller's number is kept masked only).

    Its language is the platform's tag, else the hotline's configured language; segments are detected one by one.
    A withheld number makes the call its own customer.
    """
    has_number = bool(re.search(r"\d", started.caller))
    customer = (
        caller_customer_id(tenant_id, started.caller, id_key)
        if has_number
        else stable_id(tenant_id, "phone-call", started.call_id)
    )
    return CallState(
        conversation_id=conversation_id(tenant_id, started.call_id),
        customer_id=customer,
        caller_masked=mask_phone_number(started.caller),
        dialled_number=started.dialled_number,
        language=call_language(started.language or hotline_language),
        ivr_choice=started.ivr_choice,
    )


def provider_id(item: PhoneItem) -> str:
    """The idempotency id of an item: one record per (call, event type) and per (call, final segment seq)."""
    if isinstance(item, Segment):
        return f"{item.call_id}:seg:{item.seq}" if item.final else f"{item.call_id}:partial:{item.seq}"
    return f"{item.call_id}:{item.type}"


def post_call_provider_id(call_id: str, seq: int) -> str:
    """The idempotency id of a post-call transcript cue (its position in start order)."""
    return f"{call_id}:post:{seq}"


def ordered(items: Sequence[PhoneItem]) -> list[PhoneItem]:
    """A delivery's items in the order they become records: per call by lifecycle, final segments by (seq, start).

    Calls keep the order in which they first appear; partial segments stay where they are among the segments.
    """
    first_seen: dict[str, int] = {}
    for i, item in enumerate(items):
        first_seen.setdefault(item.call_id, i)

    def key(pair: tuple[int, PhoneItem]) -> tuple[int, int, int, int, int]:
        i, item = pair
        if isinstance(item, Segment):
            return (first_seen[item.call_id], 3, item.seq, item.start_ms, i)
        return (first_seen[item.call_id], _RANK[item.type], 0, 0, i)

    return [item for _, item in sorted(enumerate(items), key=key)]


def _timestamp(ms: int | None) -> Timestamp | None:
    if ms is None:
        return None
    ts = Timestamp()
    ts.FromMilliseconds(ms)
    return ts


def _base(tenant_id: str, call: CallState, kind: int, at_ms: int | None) -> InboundMessage:
    message = InboundMessage(
        tenant_id=tenant_id,
        conversation_id=call.conversation_id,
        channel=Channel.CHANNEL_PHONE,
        kind=kind,  # type: ignore[arg-type]
        language=call.language,
        attributes=PHONE_ROUTING,
    )
    message.customer.customer_id = call.customer_id
    message.customer.contact_masked = call.caller_masked
    message.customer.member_tier = call.member_tier
    message.customer.tier_source = call.tier_source
    sent = _timestamp(at_ms)
    if sent is not None:
        message.sent_at.CopyFrom(sent)
    return message


def event_message(
    tenant_id: str, call: CallState, item: CallStarted | CallIvr | CallAnswered | CallEnded
) -> InboundMessage:
    """A lifecycle event as a CALL_EVENT record; STARTED carries caller (masked), dialled number and IVR choice."""
    message = _base(tenant_id, call, MessageKind.MESSAGE_KIND_CALL_EVENT, item.at_ms)
    ivr = item.ivr_choice if isinstance(item, CallStarted | CallIvr) else call.ivr_choice
    message.phone.CopyFrom(
        PhoneDetail(
            call_id=item.call_id,
            event=EVENTS[item.type],  # type: ignore[arg-type]
            caller_masked=call.caller_masked,
            dialled_number=call.dialled_number,
            ivr_choice=ivr,
        )
    )
    if ivr:
        message.attributes["ivr_choice"] = ivr
    if isinstance(item, CallAnswered) and item.agent_id:
        message.attributes["answered_by"] = item.agent_id
    if isinstance(item, CallEnded) and item.reason:
        message.attributes["end_reason"] = item.reason
    return message


def segment_message(tenant_id: str, call: CallState, segment: Segment) -> InboundMessage:
    """A segment as a TRANSCRIPT record (text not yet masked: Intake.prepare masks it)."""
    message = _base(tenant_id, call, MessageKind.MESSAGE_KIND_TRANSCRIPT, segment.at_ms)
    message.text = segment.text
    message.language = detect_language(segment.text) or call.language
    message.phone.CopyFrom(
        PhoneDetail(
            call_id=segment.call_id,
            event=CallEvent.CALL_EVENT_SEGMENT,
            caller_masked=call.caller_masked,
            dialled_number=call.dialled_number,
            speaker=speaker_of(segment.speaker),
            start_ms=segment.start_ms,
            end_ms=segment.end_ms,
            confidence=segment.confidence,
            is_final=segment.final,
            segment_seq=segment.seq,
        )
    )
    return message
