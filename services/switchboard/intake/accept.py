"""The accept path every adapter shares: acknowledge a sender only after Kafka acknowledged the record.

    outcome = await intake.accept(message, provider_id)   # Accepted / Duplicate; raises BrokerUnavailable
    await intake.reject(source, reason, error_type, raw)    # DLQ record with the bytes masked

Both count their outcome in `sb_inbound_messages_total` (intake/tally.py); the adapter counts through
`intake.tally` what it answers without them.

Idempotency: a Redis marker per (tenant, channel, provider id) is taken as `pending` (short TTL) before the send and
set to `done` after the broker's ack. A redelivery while `done` is a Duplicate; while `pending` (the first copy is
still in flight) the sender is told to retry later; a failed send drops the marker so the retry goes through.
The sender is answered without waiting for `done`: the marks of the acks of one loop turn go to Redis together in
one pipeline right after (`flush` on shutdown). If the adapter dies between the ack and `done`, the marker expires
and the retry produces a second record with the same message id, which the router drops as already seen.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from switchboard.contracts import Channel, InboundMessage
from switchboard.intake.ids import message_id
from switchboard.intake.language import detect_language
from switchboard.intake.tally import InboundOutcome, InboundTally
from switchboard.runtime.errors import BrokerUnavailable, TransientError
from switchboard.runtime.kafka import RecordProducer, now_timestamp
from switchboard.runtime.logs import get_logger
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
        self.prepare(message, provider_id)
        marker = self.keys.idempotency(message.tenant_id, Channel.Name(message.channel), provider_id)
        with redis_unavailable_as_transient():
            taken = await self.redis.set(marker, b"pending", nx=True, ex=PENDING_TTL_S)
            if not taken:
                state = await self.redis.get(marker)
                if state == b"done":
                    return Accepted(Outcome.DUPLICATE, message.message_id)
                if state is not None:
                    raise InFlight(f"provider message {provider_id} is being accepted")
                taken = await self.redis.set(marker, b"pending", nx=True, ex=PENDING_TTL_S)
                if not taken:
                    raise InFlight(f"provider message {provider_id} is being accepted")
        try:
            await self.producer.send(self.producer.topics.inbound, message.conversation_id, message)
        except BrokerUnavailable:
            await self._forget(marker)
            raise
        self._mark_done(marker)
        return Accepted(Outcome.ACCEPTED, message.message_id)

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
        for message, provider_id in items:
            self.prepare(message, provider_id)
        markers = [self.keys.idempotency(m.tenant_id, Channel.Name(m.channel), p) for m, p in items]
        with redis_unavailable_as_transient():
            async with self.redis.pipeline(transaction=False) as pipe:
                for marker in markers:
                    pipe.set(marker, b"pending", nx=True, ex=PENDING_TTL_S)
                    pipe.get(marker)
                replies = await pipe.execute()
        taken = [bool(replies[2 * i]) for i in range(len(items))]
        states = [replies[2 * i + 1] for i in range(len(items))]
        if any(not t and s != b"done" for t, s in zip(taken, states, strict=True)):
            await self._forget(*[m for m, t in zip(markers, taken, strict=True) if t])
            raise InFlight("a message of the batch is being accepted")
        to_send = [(m, mk) for (m, _), mk, t in zip(items, markers, taken, strict=True) if t]
        if to_send:
            try:
                await self.producer.send_many(
                    self.producer.topics.inbound, [(m.conversation_id, m) for m, _ in to_send]
                )
            except BrokerUnavailable:
                await self._forget(*[mk for _, mk in to_send])
                raise
            self._mark_done(*[mk for _, mk in to_send])
        return [
            Accepted(Outcome.ACCEPTED if t else Outcome.DUPLICATE, m.message_id)
            for (m, _), t in zip(items, taken, strict=True)
        ]

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

    async def _forget(self, *markers: str) -> None:
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
