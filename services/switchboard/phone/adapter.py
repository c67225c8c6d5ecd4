"""The phone adapter's intake: deliveries of call events and segments become InboundMessages, after Kafka acked.

- A lifecycle event becomes one CALL_EVENT record (idempotent per call and event type).
- Final segments become TRANSCRIPT records in seq order (see sequencer.py), idempotent per call and seq.
- Partial segments are never records: they go to the desk outbox of the agent who owns the call right now
  (DeskEvent TRANSCRIPT), or nowhere while nobody owns it; the final segment that follows carries the text.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from redis.asyncio import Redis
from redis.exceptions import RedisError

from switchboard.contracts import DeskEvent, DeskEventType
from switchboard.intake.accept import Intake, Outcome
from switchboard.intake.customers import CustomerContact, CustomerTiers
from switchboard.phone.calls import FIRST_SEQ, CallStore
from switchboard.phone.directory import PhoneDirectory
from switchboard.phone.metrics import PHONE_ITEMS
from switchboard.phone.records import (
    CallState,
    event_message,
    new_call,
    ordered,
    post_call_provider_id,
    provider_id,
    segment_message,
)
from switchboard.phone.sequencer import Sequencer
from switchboard.phone.wire import CallIvr, CallStarted, Delivery, PhoneInputError, PhoneItem, Segment
from switchboard.runtime.errors import TransientError
from switchboard.runtime.kafka import now_timestamp
from switchboard.runtime.logs import get_logger
from switchboard.runtime.pii import mask_phone_number
from switchboard.state.keys import Keys
from switchboard.state.outbox import append_desk_event

log = get_logger(__name__)

POST_CALL_CHUNK = 200
DLQ_ORIGINAL_MAX = 128 * 1024
_CALLER_FIELD = re.compile(rb'("caller"\s*:\s*")([^"]*)(")')


@dataclass(frozen=True)
class ItemResult:
    """What became of one item: accepted, duplicate (taken before), forwarded (partial to the owner), no_owner."""

    ref: str
    status: str


def mask_callers(raw: bytes) -> bytes:
    """Raw input with every `"caller": "..."` value masked, landlines included (mask_pii only knows mobiles)."""
    return _CALLER_FIELD.sub(lambda m: m.group(1) + mask_phone_number(m.group(2).decode()).encode() + m.group(3), raw)


class PhoneAdapter:
    """Takes deliveries for one tenant at a time; raises PhoneInputError, or TransientError / BrokerUnavailable."""

    def __init__(
        self,
        intake: Intake,
        calls: CallStore,
        directory: PhoneDirectory,
        sequencer: Sequencer,
        redis: Redis,
        keys: Keys,
        customer_id_key: bytes = b"",
        tiers: CustomerTiers | None = None,
    ) -> None:
        self.intake = intake
        self.tiers = tiers
        self.customer_id_key = customer_id_key
        self.calls = calls
        self.directory = directory
        self.sequencer = sequencer
        self.redis = redis
        self.keys = keys

    async def handle(self, tenant_id: str, delivery: Delivery) -> list[ItemResult]:
        """Write a delivery's records in order and return one result per item."""
        items = ordered(delivery.items)
        calls = await self._calls_of(tenant_id, items)
        results: list[ItemResult] = []
        i = 0
        while i < len(items):
            item = items[i]
            if isinstance(item, Segment) and item.final:
                j = i
                while j < len(items) and _is_final_of(items[j], item.call_id):
                    j += 1
                results += await self._finals(tenant_id, calls[item.call_id], items[i:j])  # type: ignore[arg-type]
                i = j
                continue
            if isinstance(item, Segment):
                results.append(await self._partial(tenant_id, calls[item.call_id], item))
            else:
                results.append(await self._event(tenant_id, calls[item.call_id], item))
            i += 1
        return results

    async def _calls_of(self, tenant_id: str, items: Sequence[PhoneItem]) -> dict[str, CallState]:
        """Every call of the delivery: started in it (its number must be the tenant's), or started before."""
        calls: dict[str, CallState] = {}
        started: list[CallStarted] = []
        for item in items:
            if isinstance(item, CallStarted) and item.call_id not in calls:
                owner = self.directory.tenant_for_number(item.dialled_number)
                if owner != tenant_id:
                    raise PhoneInputError(
                        f"call {item.call_id}: dialled number {item.dialled_number} is not a hotline of this tenant",
                        "wrong_tenant",
                        403,
                    )
                language = self.directory.language_of(item.dialled_number)
                calls[item.call_id] = new_call(tenant_id, item, language, self.customer_id_key)
                started.append(item)
        # The callers' tiers at once: a delivery of many new calls waits one lookup timeout, not one per call.
        tiered = await asyncio.gather(*(self._with_tier(tenant_id, s, calls[s.call_id]) for s in started))
        calls.update((s.call_id, call) for s, call in zip(started, tiered, strict=True))
        for call_id in {item.call_id for item in items} - calls.keys():
            state = await self.calls.get(tenant_id, call_id)
            if state is None:
                raise PhoneInputError(f"unknown call {call_id}: send call.started first", "unknown_call", 404)
            calls[call_id] = state
        return calls

    async def _with_tier(self, tenant_id: str, started: CallStarted, call: CallState) -> CallState:
        """The caller's member tier from the shop's customer lookup, asked once per call (a withheld number has
        none); every record of the call carries it."""
        if self.tiers is None or not re.search(r"\d", started.caller):
            return call
        tier = await self.tiers.tier_of(tenant_id, CustomerContact("phone", call.customer_id, started.caller))
        return replace(call, member_tier=tier.member_tier, tier_source=tier.source)

    async def _event(self, tenant_id: str, call: CallState, item: PhoneItem) -> ItemResult:
        if isinstance(item, CallStarted):
            await self.calls.start(tenant_id, item.call_id, call)
        elif isinstance(item, CallIvr):
            await self.calls.update(tenant_id, item.call_id, ivr_choice=item.ivr_choice)
        else:
            await self.calls.update(tenant_id, item.call_id, state=item.type.removeprefix("call."))
        message = event_message(tenant_id, call, item)  # type: ignore[arg-type]
        accepted = await self.intake.accept(message, provider_id(item))
        log.info(
            "call_event",
            tenant_id=tenant_id,
            conversation_id=call.conversation_id,
            call_event=item.type,
            outcome=accepted.outcome.value,
        )
        PHONE_ITEMS.labels(item.type, accepted.outcome.value).inc()
        return ItemResult(provider_id(item), accepted.outcome.value)

    async def _finals(self, tenant_id: str, call: CallState, segments: Sequence[Segment]) -> list[ItemResult]:
        """One call's final segments (sorted by seq): wait for their turn, write them, advance next_seq."""
        unique: dict[int, Segment] = {}
        for segment in segments:
            unique.setdefault(segment.seq, segment)
        call_id = segments[0].call_id
        turn = await self.sequencer.turn(tenant_id, call_id, lambda: self.calls.next_seq(tenant_id, call_id))
        first, last = min(unique), max(unique)
        if not await turn.wait_for(first, self.sequencer.window_s):
            log.warning(
                "segment_gap_skipped", tenant_id=tenant_id, call_id=call_id, missing_from=turn.next_seq, to=first
            )
        batch = []
        for seq, segment in unique.items():
            message = segment_message(tenant_id, call, segment)
            # Platforms number from 0 or from 1: a seq 0 before anything else was written is on time.
            if seq < turn.next_seq and not (seq == 0 and turn.next_seq == FIRST_SEQ):
                message.attributes["out_of_order"] = "true"
            batch.append((message, provider_id(segment)))
        accepted = await self.intake.accept_many(batch)
        await self.calls.advance(tenant_id, call_id, last + 1)
        await turn.advance(last + 1)
        outcomes = {provider_id(s): a.outcome.value for s, a in zip(unique.values(), accepted, strict=True)}
        for outcome in outcomes.values():
            PHONE_ITEMS.labels("segment.final", outcome).inc()
        # Every copy of a seq in the delivery gets an answer; copies after the first are duplicates.
        results = []
        seen: set[str] = set()
        for segment in segments:
            ref = provider_id(segment)
            results.append(ItemResult(ref, outcomes[ref] if ref not in seen else Outcome.DUPLICATE.value))
            seen.add(ref)
        return results

    async def _partial(self, tenant_id: str, call: CallState, segment: Segment) -> ItemResult:
        """Forward a live hypothesis to the call's current owner; it is never a record on the inbound topic."""
        ref = provider_id(segment)
        try:
            owner, epoch, state = await self.redis.hmget(
                self.keys.conversation(tenant_id, call.conversation_id), "owner", "epoch", "state"
            )
        except RedisError as exc:
            raise TransientError(f"redis unavailable: {exc!r}") from exc
        if not owner or state == b"closed":
            PHONE_ITEMS.labels("segment.partial", "no_owner").inc()
            return ItemResult(ref, "no_owner")
        message = self.intake.prepare(segment_message(tenant_id, call, segment), ref)
        event = DeskEvent(
            tenant_id=tenant_id,
            agent_id=owner.decode() if isinstance(owner, bytes) else str(owner),
            type=DeskEventType.DESK_EVENT_TRANSCRIPT,
            conversation_id=call.conversation_id,
            epoch=int(epoch or 0),
            at=now_timestamp(),
            message=message,
        )
        try:
            await append_desk_event(self.redis, self.keys, event)
        except RedisError as exc:
            raise TransientError(f"redis unavailable: {exc!r}") from exc
        PHONE_ITEMS.labels("segment.partial", "forwarded").inc()
        return ItemResult(ref, "forwarded")

    async def import_transcript(self, tenant_id: str, call_id: str, segments: Sequence[Segment]) -> list[ItemResult]:
        """A post-call transcript (segments in start order, seq 1..n) as TRANSCRIPT records of the call."""
        call = await self.calls.get(tenant_id, call_id)
        if call is None:
            raise PhoneInputError(f"unknown call {call_id}: send call.started first", "unknown_call", 404)
        results: list[ItemResult] = []
        for at in range(0, len(segments), POST_CALL_CHUNK):
            batch = []
            for segment in segments[at : at + POST_CALL_CHUNK]:
                message = segment_message(tenant_id, call, segment)
                message.attributes["source"] = "post_call"
                batch.append((message, post_call_provider_id(call_id, segment.seq)))
            for (_, ref), accepted in zip(batch, await self.intake.accept_many(batch), strict=True):
                results.append(ItemResult(ref, accepted.outcome.value))
                PHONE_ITEMS.labels("transcript.post_call", accepted.outcome.value).inc()
        return results

    async def reject(self, *, source: str, error: PhoneInputError, raw: bytes, tenant_id: str = "") -> None:
        """A DLQ record of refused input, callers' numbers and PII in text masked.

        Only the first DLQ_ORIGINAL_MAX bytes are kept: a refused 2 MiB transcript would exceed Kafka's record size
        limit, and a DLQ write that can never succeed would answer "retry later" for ever.
        """
        reason = error.reason
        if len(raw) > DLQ_ORIGINAL_MAX:
            reason += f" (DLQ keeps the first {DLQ_ORIGINAL_MAX} of {len(raw)} bytes)"
        await self.intake.reject(
            source=source,
            reason=reason,
            error_type=error.error_type,
            # A cut through a phone number would leave digits no mask recognises: drop a trailing digit run.
            raw=mask_callers(raw if len(raw) <= DLQ_ORIGINAL_MAX else raw[:DLQ_ORIGINAL_MAX].rstrip(b"0123456789 -+")),
            tenant_id=tenant_id,
        )


def _is_final_of(item: PhoneItem, call_id: str) -> bool:
    return isinstance(item, Segment) and item.final and item.call_id == call_id


def results_json(results: Sequence[ItemResult]) -> list[dict[str, str]]:
    """Results as the JSON both the HTTP and the websocket acknowledgement carry."""
    return [{"ref": r.ref, "status": r.status} for r in results]


def dump(value: object) -> str:
    """Compact JSON for frames."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
