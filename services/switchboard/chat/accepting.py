"""The one path a chat message takes onto the inbound topic, from a widget socket or a webhook alike."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from switchboard.chat.conversations import Conversations
from switchboard.chat.facts import TrustedFacts
from switchboard.chat.frames import ChatInput, to_inbound
from switchboard.contracts import Channel, InboundMessage
from switchboard.intake.accept import Intake, Outcome, marker_taken
from switchboard.intake.tally import InboundOutcome
from switchboard.runtime.errors import BrokerUnavailable
from switchboard.runtime.logs import get_logger
from switchboard.runtime.lua import ScriptCall, run_pipelined
from switchboard.runtime.pii import CustomerRef, mask_pii
from switchboard.runtime.redis_client import redis_unavailable_as_transient

log = get_logger(__name__)

CHAT = Channel.Name(Channel.CHANNEL_CHAT)


@dataclass(frozen=True)
class ChatAccepted:
    """What the sender is told: stored (or stored before), under which id, in which conversation."""

    duplicate: bool
    message_id: str
    conversation_id: str


@dataclass(frozen=True)
class Admission:
    """One Redis round trip for messages a socket read together: the answers of the caller's own calls (e.g. the
    customer's rate counter, one per message), the customer's open conversation, each message's idempotency
    marker (for `offer_marked`)."""

    answers: list[Any]
    conversation_id: str
    markers: list[Any]


class ChatAccept:
    """Gives a message its conversation and hands it to the shared Intake (acknowledged after Kafka's ack)."""

    def __init__(self, intake: Intake, conversations: Conversations) -> None:
        self.intake = intake
        self.conversations = conversations

    async def offer(
        self,
        msg: ChatInput,
        *,
        tenant_id: str,
        customer: CustomerRef,
        provider_id: str,
        connection_id: str = "",
        event_id: str = "",
        facts: TrustedFacts | None = None,
        conversation_id: str = "",
    ) -> ChatAccepted:
        """Accept one message of a customer (named by their ref, never their raw id) with the facts a signed source
        stated (webhook body, widget token claims); raises TransientError (BrokerUnavailable included) when the
        sender must retry. `conversation_id`: the customer's open conversation when the caller just read it."""
        if not conversation_id:
            with redis_unavailable_as_transient():
                conversation_id = await self.conversations.current(tenant_id, customer.ref)
        record = _inbound(msg, tenant_id, customer, conversation_id, connection_id, facts, event_id)
        accepted = await self.intake.accept(record, provider_id)
        return ChatAccepted(accepted.outcome == Outcome.DUPLICATE, accepted.message_id, conversation_id)

    async def admit(
        self, tenant_id: str, customer_id: str, known: str, calls: Sequence[ScriptCall], provider_ids: Sequence[str]
    ) -> Admission:
        """`calls` (scripts of the same tenant), the open conversation (`known`: the one the caller last saw) and the
        markers of `provider_ids`, in one round trip; TransientError when Redis cannot be reached. A marker taken
        for a message that is not offered after all goes back through `release`."""
        open_call, fresh = self.conversations.open_call(tenant_id, customer_id, known)
        markers = [self.intake.marker_call(tenant_id, CHAT, provider_id) for provider_id in provider_ids]
        with redis_unavailable_as_transient():
            answers = await run_pipelined(self.intake.redis, [*calls, open_call, *markers])
            conversation_id = await self.conversations.opened(tenant_id, answers[len(calls)], fresh, known)
        return Admission(answers[: len(calls)], conversation_id, answers[len(calls) + 1 :])

    async def offer_marked(
        self,
        msgs: Sequence[tuple[ChatInput, str, Any]],
        *,
        tenant_id: str,
        customer: CustomerRef,
        connection_id: str,
        facts: TrustedFacts | None,
        conversation_id: str,
    ) -> list[ChatAccepted | None]:
        """Messages of one socket (message, provider id, its marker's answer from `admit`) onto the inbound topic in
        one round trip to the broker, in order; None for one in flight elsewhere (the sender retries later).
        Raises TransientError (BrokerUnavailable) when the broker did not acknowledge them."""
        records = [
            (_inbound(msg, tenant_id, customer, conversation_id, connection_id, facts), provider_id, marker)
            for msg, provider_id, marker in msgs
        ]
        found = await self.intake.send_marked(records)
        self.intake.count_marked(tenant_id, found)
        return [
            None if a is None else ChatAccepted(a.outcome == Outcome.DUPLICATE, a.message_id, conversation_id)
            for a in found
        ]

    async def release(self, tenant_id: str, markers: Sequence[tuple[str, Any]]) -> None:
        """Give back the markers `admit` took (provider id, its marker's answer) for messages that were not offered
        after all (limited, or after a strike closed the socket); markers others hold stay."""
        await self.intake.release(
            [self.intake.keys.idempotency(tenant_id, CHAT, p) for p, answer in markers if marker_taken(answer)]
        )

    def count(self, tenant_id: str, outcome: InboundOutcome) -> None:
        """Count a message this adapter answered without the intake (retry later, rate limited)."""
        self.intake.tally.count(tenant_id, outcome)

    async def refuse(
        self, *, source: str, reason: str, error_type: str, raw: bytes, tenant_id: str = "", offered: bool = True
    ) -> None:
        """DLQ record of refused input (masked by Intake.reject); the refusal stands even when Kafka is down.
        `offered` False: no customer message (a reply that could not be delivered), not counted as inbound."""
        try:
            # Reasons may quote what the sender sent (an event id, a header): masked like the bytes.
            await self.intake.reject(
                source=source,
                reason=mask_pii(reason),
                error_type=error_type,
                raw=raw,
                tenant_id=tenant_id,
                offered=offered,
            )
        except BrokerUnavailable:
            log.warning("chat_dead_letter_failed", source=source, error_type=error_type, tenant_id=tenant_id)
            # The sender is refused all the same: counted here, as Intake.reject counts only what it recorded.
            if offered:
                self.intake.tally.count(tenant_id, InboundOutcome.REFUSED)


def _inbound(
    msg: ChatInput,
    tenant_id: str,
    customer: CustomerRef,
    conversation_id: str,
    connection_id: str,
    facts: TrustedFacts | None,
    event_id: str = "",
) -> InboundMessage:
    """The InboundMessage of a customer's chat message (the customer named by their ref only)."""
    return to_inbound(
        msg,
        tenant_id=tenant_id,
        customer_id=customer.ref,
        contact_masked=customer.contact_masked,
        conversation_id=conversation_id,
        connection_id=connection_id,
        event_id=event_id,
        facts=facts,
    )
