"""The accept path every adapter shares: acknowledge a sender only after Kafka acknowledged the record.

    outcome = await intake.accept(message, provider_id)   # Accepted / Duplicate; raises BrokerUnavailable
    await intake.reject(source, reason, error_type, raw)    # DLQ record with the bytes masked
    # or, with the markers taken in the caller's own Redis round trip (the chat widget's admission):
    states = await run_pipelined(redis, [*callers_calls, *(intake.marker_call(t, ch, pid) for ...)])
    found = await intake.send_marked([(message, pid, state), ...])   # None: in flight, retry later

Both count their outcome in `sb_inbound_messages_total` (intake/tally.py); the adapter counts through
`intake.tally` what it answers without them.

Idempotency: a Redis marker per (tenant, channel, provider id) is taken as `pending` (short TTL) before the send, in
one script call (lua/take_marker.lua), and set to `done` after the broker's ack. A redelivery while `done` is a
Duplicate; while `pending` (the first copy is still in flight) the sender is told to retry later; a failed send
drops the marker so the retry goes through.
The sender is answered without waiting for `done`: the marks of the acks of one loop turn go to Redis together in
one pipeline right after (`flush` on shutdown). If the adapter dies between the ack and `done`, the marker expires
and the retry produces a second record with the same message id, which the router drops as already seen.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from switchboard.contracts import Channel, InboundMessage
from switchboard.intake.ids import message_id
from switchboard.intake.language import detect_language
from switchboard.intake.tally import InboundOutcome, InboundTally
from switchboard.runtime.errors import BrokerUnavailable, TransientError
from switchboard.runtime.kafka import RecordProducer, now_timestamp
from switchboard.runtime.logs import get_logger
from switchboard.runtime.lua import LuaScript, ScriptCall, run_pipelined
from switchboard.runtime.pii import mask_bytes, mask_pii
from switchboard.runtime.redis_client import redis_unavailable_as_transient
from switchboard.state.keys import Keys

log = get_logger(__name__)

PENDING_TTL_S = 30
# What every adapter tells a sender whose message the broker did not acknowledge in time. It may have been stored
# anyway (acks=all timed out after the write landed); a resend with the same id is safe: the same message id comes
# out, and the router takes a message id once (docs/chat-widget.md, "Retry later").
RETRY_LATER_REASON = "not acknowledged in time; it may have been stored: send it again with the same id (safe)"
DONE_TTL_S = 7 * 24 * 3600


class Outcome(enum.Enum):
    """What happened to an offered message."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"


# What `marker_call` answers: this caller holds the marker now, another holds it (in flight), or it was done.
TAKEN = "taken"
PENDING = "pending"
DONE = "done"
TAKE_MARKER = LuaScript.load(__file__, "take_marker")


def _state(answer: Any) -> str:
    return answer.decode() if isinstance(answer, bytes) else str(answer)


def marker_taken(answer: Any) -> bool:
    """Whether a `marker_call` answer says the caller took the marker (and must send or release it)."""
    return _state(answer) == TAKEN


class InFlight(TransientError):
    """The same provider message is being accepted right now; the sender should retry later."""


@dataclass(frozen=True)
class Accepted:
    """The result of `Intake.accept`."""

    outcome: Outcome
    message_id: str


class Intake:
    """Writes normalized InboundMessages to the inbound topic, once per provider message."""

    def __init__(self, producer: RecordProducer, redis: Redis, keys: Keys, tally: InboundTally) -> None:
        self.producer = producer
        self.redis = redis
        self.keys = keys
        self.tally = tally
        # Markers of acknowledged sends not yet set `done`, and the task setting them.
        self._done: list[str] = []
        self._marking: asyncio.Task[None] | None = None

    def prepare(self, message: InboundMessage, provider_id: str) -> InboundMessage:
        """Fill the ids, receive time and language, and mask PII in the text (in place; returns it)."""
        channel = Channel.Name(message.channel)
        message.provider_message_id = provider_id
        message.message_id = message_id(message.tenant_id, channel, provider_id)
        if not message.HasField("received_at"):
            message.received_at.CopyFrom(now_timestamp())
        message.text = mask_pii(message.text)
        if not message.language:
            message.language = detect_language(message.text)
        return message

    async def accept(self, message: InboundMessage, provider_id: str) -> Accepted:
        """Send one message unless this provider id was accepted before; return after the broker's ack."""
        accepted = await self._accept(message, provider_id)
        self._count(message.tenant_id, accepted.outcome)
        return accepted

    def _count(self, tenant_id: str, outcome: Outcome) -> None:
        self.tally.count(tenant_id, InboundOutcome(outcome.value))

    async def _accept(self, message: InboundMessage, provider_id: str) -> Accepted:
        call = self.marker_call(message.tenant_id, Channel.Name(message.channel), provider_id)
        with redis_unavailable_as_transient():
            state = await call.script(self.redis, call.keys, call.args)
        [accepted] = await self.send_marked([(message, provider_id, state)])
        if accepted is None:
            raise InFlight(f"provider message {provider_id} is being accepted")
        return accepted

    async def accept_many(self, items: Sequence[tuple[InboundMessage, str]]) -> list[Accepted]:
        """`accept` for several messages of one conversation in one round trip to the broker, order kept.

        Each (message, provider id) gets its own marker; those already done are Duplicates and are not sent again.
        When any of them is in flight elsewhere, nothing is sent and InFlight is raised (the sender retries the
        whole batch, and the rest become Duplicates then).
        """
        found = await self._accept_many(items)
        for (message, _), accepted in zip(items, found, strict=True):
            self._count(message.tenant_id, accepted.outcome)
        return found

    async def _accept_many(self, items: Sequence[tuple[InboundMessage, str]]) -> list[Accepted]:
        calls = [self.marker_call(m.tenant_id, Channel.Name(m.channel), p) for m, p in items]
        with redis_unavailable_as_transient():
            states = await run_pipelined(self.redis, calls)
        if any(_state(s) == PENDING for s in states):
            await self.release([c.keys[0] for c, s in zip(calls, states, strict=True) if marker_taken(s)])
            raise InFlight("a message of the batch is being accepted")
        found = await self.send_marked([(m, p, s) for (m, p), s in zip(items, states, strict=True)])
        return [a for a in found if a is not None]

    def marker_call(self, tenant_id: str, channel: str, provider_id: str) -> ScriptCall:
        """Take a provider message's idempotency marker, as a script call to pipeline with a caller's others; its
        answer goes to `send_marked` (or, when the message is not sent after all, its key to `release`)."""
        return ScriptCall(TAKE_MARKER, [self.keys.idempotency(tenant_id, channel, provider_id)], [PENDING_TTL_S])

    async def send_marked(self, items: Sequence[tuple[InboundMessage, str, Any]]) -> list[Accepted | None]:
        """Messages of one conversation (message, provider id, the answer of its `marker_call`), in order: those
        whose marker this replica took are sent in one round trip to the broker (raises BrokerUnavailable, their
        markers dropped); those done before are Duplicates; None for one in flight elsewhere (retry later).
        Counted by the caller (`accept`) or here (`count_marked`)."""
        found: list[Accepted | None] = []
        to_send: list[tuple[InboundMessage, str]] = []
        taken_here: set[str] = set()
        for message, provider_id, answer in items:
            self.prepare(message, provider_id)
            # The same provider message twice in the batch: the second is a Duplicate of the first, as if the two
            # had come one after the other (its marker call found the first one's `pending`).
            state = DONE if provider_id in taken_here else _state(answer)
            if state == TAKEN:
                taken_here.add(provider_id)
                to_send.append(
                    (message, self.keys.idempotency(message.tenant_id, Channel.Name(message.channel), provider_id))
                )
            found.append(
                Accepted(Outcome.ACCEPTED if state == TAKEN else Outcome.DUPLICATE, message.message_id)
                if state != PENDING
                else None
            )
        if to_send:
            try:
                await self.producer.send_many(
                    self.producer.topics.inbound, [(m.conversation_id, m) for m, _ in to_send]
                )
            except BrokerUnavailable:
                await self.release([marker for _, marker in to_send])
                raise
            self._mark_done(*[marker for _, marker in to_send])
        return found

    def count_marked(self, tenant_id: str, found: Sequence[Accepted | None]) -> None:
        """Count what `send_marked` answered (one in flight is counted by the caller's retry-later answer)."""
        for accepted in found:
            if accepted is not None:
                self._count(tenant_id, accepted.outcome)

    def _mark_done(self, *markers: str) -> None:
        """Set these markers `done` soon, with the others of this loop turn, in one round trip."""
        self._done.extend(markers)
        if self._marking is None or self._marking.done():
            self._marking = asyncio.create_task(self._set_done(), name="intake-done-marks")

    async def _set_done(self) -> None:
        await asyncio.sleep(0)  # the other acks of this loop turn add theirs
        while self._done:
            batch, self._done = self._done, []
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for marker in batch:
                        pipe.set(marker, b"done", ex=DONE_TTL_S)
                    await pipe.execute()
            except RedisError as exc:
                # The records are on the topic and their senders have their acks; a redelivery would carry the same
                # message ids (the router takes each once).
                log.warning("idempotency_mark_failed", count=len(batch), error=repr(exc))

    async def flush(self) -> None:
        """Set every pending `done` marker now (on shutdown, before the Redis client closes)."""
        if self._marking is not None:
            await self._marking

    async def release(self, markers: Sequence[str | bytes]) -> None:
        """Drop markers taken for messages that were not sent after all (their retry goes through)."""
        if not markers:
            return
        try:
            await self.redis.delete(*markers)
        except RedisError as exc:
            log.warning("idempotency_forget_failed", error=repr(exc))

    async def reject(
        self,
        *,
        source: str,
        reason: str,
        error_type: str,
        raw: bytes,
        tenant_id: str = "",
        key: str = "",
        offered: bool = True,
    ) -> None:
        """Record refused input in the DLQ, PII-masked, and count it refused unless it is no customer message
        (`offered` False: e.g. a reply the adapter could not deliver); raises BrokerUnavailable when Kafka is down
        (nothing counted: the adapter answers retry later, or counts the refusal it keeps anyway)."""
        await self.producer.dead_letter(
            source=source,
            reason=reason,
            error_type=error_type,
            original=mask_bytes(raw),
            tenant_id=tenant_id,
            key=key,
        )
        if offered:
            self.tally.count(tenant_id, InboundOutcome.REFUSED)
