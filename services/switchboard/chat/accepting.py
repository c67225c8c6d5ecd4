"""The one path a chat message takes onto the inbound topic, from a widget socket or a webhook alike."""

from __future__ import annotations

from dataclasses import dataclass

from switchboard.chat.conversations import Conversations
from switchboard.chat.facts import TrustedFacts
from switchboard.chat.frames import ChatInput, to_inbound
from switchboard.intake.accept import Intake, Outcome
from switchboard.intake.tally import InboundOutcome
from switchboard.runtime.errors import BrokerUnavailable
from switchboard.runtime.logs import get_logger
from switchboard.runtime.pii import CustomerRef, mask_pii
from switchboard.runtime.redis_client import redis_unavailable_as_transient

log = get_logger(__name__)


@dataclass(frozen=True)
class ChatAccepted:
    """What the sender is told: stored (or stored before), under which id, in which conversation."""

    duplicate: bool
    message_id: str
    conversation_id: str


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
        record = to_inbound(
            msg,
            tenant_id=tenant_id,
            customer_id=customer.ref,
            contact_masked=customer.contact_masked,
            conversation_id=conversation_id,
            connection_id=connection_id,
            event_id=event_id,
            facts=facts,
        )
        accepted = await self.intake.accept(record, provider_id)
        return ChatAccepted(accepted.outcome == Outcome.DUPLICATE, accepted.message_id, conversation_id)

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
