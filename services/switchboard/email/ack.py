"""The acknowledgement mail: once per e-mail conversation that has to wait, with the expected answer time.

**Trigger**: the router's QUEUED decisions for e-mail conversations on `sb.routing.v1`, read in a consumer group of
their own (`email-acks`). The topic rather than polling the router's state, because the router already publishes
the moment a conversation starts waiting, keyed by conversation, to every adapter; a poll would scan every e-mail
conversation of every tenant to find the few that just started waiting. A conversation assigned (or offered) at
once gets no QUEUED decision, so no acknowledgement.

**Whether**, when the decision is handled (at the earliest `email_ack_grace_s` after it was made): the tenant's
surge profile in force has `customer_updates.email`; the conversation is still queued (one an agent took meanwhile,
e.g. the router's drain right after a queued-but-stale plan, needs no promise: the answer is on its way); the
customer's address is no robot or no-reply sender (`loops.may_auto_reply`). **What**: its place and the router's
estimate for its group's e-mail queue (`state.waiting`) as the expected answer time, in the customer's language
(zh/en, else the shop's), threaded under the customer's last mail (In-Reply-To, References, "Re: subject"),
marked `Auto-Submitted: auto-replied` so the customer's own auto-responder does not answer it.

**Once**, across replicas and restarts: the conversation's claim in Redis decides who sends (`SET NX` of
`sending` with a lease, then `sent`). A repeated or redelivered QUEUED finds `sent` and does nothing; a replica
that finds another's live lease retries later (TransientError), so a replica dying mid-send still ends in one
mail once the lease expires. The Message-ID is derived from the conversation, so the one case left — a crash
after the relay took the mail, before `sent` was written — resends the same message, which mail clients show once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr

from switchboard.contracts import Channel, RoutingEvent, RoutingEventType
from switchboard.email.loops import may_auto_reply
from switchboard.email.metrics import ACKS
from switchboard.email.outbound import SENT_TTL_S, relay, reply_subject
from switchboard.email.settings import EmailSettings
from switchboard.email.threads import MAX_REFERENCES_KEPT, Contact, ThreadBook
from switchboard.runtime.consumer import Delivery, Rejected
from switchboard.runtime.errors import TransientError
from switchboard.runtime.logs import get_logger
from switchboard.runtime.redis_client import redis_unavailable_as_transient
from switchboard.state.keys import Keys
from switchboard.state.waiting import QueuePlace, place_of, updates_on, wait_phrase

log = get_logger(__name__)

CONSUMER_NAME = "email-acks"
SENDING = b"sending"
SENT = b"sent"


def ack_language(contact: Contact, tenant_id: str, settings: EmailSettings) -> str:
    """zh or en: the customer's mail's language (en for any but Chinese), else the shop's one, else the default."""
    if contact.language in ("zh", "en"):
        return contact.language
    if contact.language:  # a buyer writing Japanese or Spanish reads English better than Chinese
        return "en"
    return settings.email_ack_languages.get(tenant_id, settings.email_ack_default_language)


def ack_text(place: QueuePlace, language: str) -> str:
    """The acknowledgement's body: received, how many are ahead, when to expect the answer."""
    ahead = place.position - 1
    phrase = wait_phrase(place.estimated_wait_s, language)
    if language == "zh":
        where = f"目前咨询较多，您前面还有 {ahead} 位顾客在等待。" if ahead else "目前咨询较多，您是下一位。"
        return (
            f"您好！\n\n我们已收到您的邮件。{where}预计{phrase}内回复您。\n\n"
            "如需补充信息，请直接回复本邮件，无需重新发送。\n\n（本邮件为自动发送）\n"
        )
    where = (
        f"We are busier than usual: {ahead} customer{'s are' if ahead > 1 else ' is'} ahead of you."
        if ahead
        else "We are busier than usual; you are next in line."
    )
    return (
        f"Hello,\n\nWe have received your e-mail. {where} We expect to answer within {phrase}.\n\n"
        "To add anything, simply reply to this e-mail; there is no need to write again.\n\n"
        "(This message was sent automatically.)\n"
    )


def ack_message_id(tenant_id: str, conversation_id: str, settings: EmailSettings) -> str:
    """The acknowledgement's Message-ID: one per conversation, so a resend is the same message."""
    return f"<ack.{conversation_id}.{tenant_id}@{settings.smtp_hostname}>"


def compose_ack(
    tenant_id: str, place: QueuePlace, contact: Contact, language: str, settings: EmailSettings
) -> EmailMessage:
    """The acknowledgement mail, threaded under the customer's last message."""
    msg = EmailMessage()
    shop = contact.shop_address or f"{settings.reply_from_local_part}@{settings.smtp_hostname}"
    msg["From"] = formataddr(("", shop))
    msg["To"] = contact.customer_address
    msg["Subject"] = reply_subject(contact.subject)
    msg["Message-ID"] = ack_message_id(tenant_id, place.conversation_id, settings)
    if contact.last_message_id:
        msg["In-Reply-To"] = f"<{contact.last_message_id}>"
    refs = contact.references[-MAX_REFERENCES_KEPT:]
    if refs:
        msg["References"] = " ".join(f"<{r}>" for r in refs)
    msg["Date"] = format_datetime(datetime.now(UTC))
    # RFC 3834: an automatic answer says so, and asks Exchange-style responders not to answer it.
    msg["Auto-Submitted"] = "auto-replied"
    msg["X-Auto-Response-Suppress"] = "All"
    msg["Content-Language"] = "zh-CN" if language == "zh" else "en"
    msg.set_content(ack_text(place, language), charset="utf-8")
    return msg


class AckSender:
    """The `email-acks` consumer's handler: QUEUED e-mail decisions become one acknowledgement each."""

    def __init__(self, settings: EmailSettings, book: ThreadBook, keys: Keys) -> None:
        self.settings = settings
        self.book = book
        self.keys = keys

    async def handle(self, batch: Sequence[Delivery]) -> Sequence[Rejected]:
        """Acknowledge the conversations that started waiting; other decisions and channels are not ours."""
        for delivery in batch:
            event = delivery.message
            if (
                isinstance(event, RoutingEvent)
                and event.type == RoutingEventType.ROUTING_EVENT_QUEUED
                and event.channel == Channel.CHANNEL_EMAIL
                and event.tenant_id
                and event.conversation_id
            ):
                await self._settle(event)
                with redis_unavailable_as_transient():
                    await self.acknowledge(event.tenant_id, event.conversation_id)
        return ()

    async def _settle(self, event: RoutingEvent) -> None:
        """Wait until the decision is `email_ack_grace_s` old: the router publishes a QUEUED decision before it
        drains the queue of a plan that found an agent's room changed, so a conversation it assigns a moment later
        is no waiting customer. Never longer than the grace, whatever the two clocks say."""
        grace = self.settings.email_ack_grace_s
        age = time.time() - event.at.ToMilliseconds() / 1000 if event.HasField("at") else grace
        await asyncio.sleep(min(grace, max(0.0, grace - age)))

    async def acknowledge(self, tenant_id: str, conversation_id: str) -> str:
        """Send the conversation's acknowledgement if it is due; what became of it (for logs and tests)."""
        marker = self.keys.processed(tenant_id, CONSUMER_NAME, conversation_id)
        due = await self._due(tenant_id, conversation_id, marker)
        if isinstance(due, str):
            return due
        if not await self._claim(marker):
            return "already_sent"
        return await self._send(tenant_id, *due, marker)

    async def _due(self, tenant_id: str, conversation_id: str, marker: str) -> str | tuple[QueuePlace, Contact]:
        """The place and contact to acknowledge with, or why there is nothing to send."""
        redis = self.book.redis
        if await redis.get(marker) == SENT:
            return "already_sent"
        if not await updates_on(redis, self.keys, tenant_id, "email"):
            return "off"
        fallback = self.settings.email_seconds_per_queue_position
        place = await place_of(redis, self.keys, tenant_id, conversation_id, fallback)
        if place is None:
            return "not_queued"
        contact = await self.book.contact(tenant_id, conversation_id)
        if contact is None or not contact.customer_address:
            return _skipped("no_contact")
        if not may_auto_reply(contact.customer_address):
            return _skipped("robot_sender")
        return place, contact

    async def _send(self, tenant_id: str, place: QueuePlace, contact: Contact, marker: str) -> str:
        redis = self.book.redis
        language = ack_language(contact, tenant_id, self.settings)
        message = compose_ack(tenant_id, place, contact, language, self.settings)
        try:
            problem = await relay(message, self.settings)
        except BaseException:
            await redis.delete(marker)  # not sent: the retried trigger sends it
            raise
        # A refused address stays refused: marked done like a sent mail, so no retry mails it again.
        await redis.set(marker, SENT, ex=SENT_TTL_S)
        if problem is not None:
            ACKS.labels("refused").inc()
            log.warning("email_ack_refused", tenant_id=tenant_id, conversation_id=place.conversation_id, reason=problem)
            return "refused"
        await self._thread(tenant_id, place.conversation_id, contact, str(message["Message-ID"]).strip("<>"))
        ACKS.labels("sent").inc()
        log.info(
            "email_ack_sent",
            tenant_id=tenant_id,
            conversation_id=place.conversation_id,
            position=place.position,
            expected_s=place.estimated_wait_s,
            language=language,
        )
        return "sent"

    async def _claim(self, marker: str) -> bool:
        """True when this replica is to send; False when it was sent; TransientError while another sends."""
        redis = self.book.redis
        lease = SENDING + b":" + self.settings.instance_id.encode()
        if await redis.set(marker, lease, nx=True, ex=self.settings.email_ack_claim_s):
            return True
        if await redis.get(marker) == SENT:
            return False
        raise TransientError("another replica is sending this acknowledgement")

    async def _thread(self, tenant_id: str, conversation_id: str, contact: Contact, own_id: str) -> None:
        """The customer's answer to the acknowledgement joins the conversation like an answer to a reply."""
        refs = [*contact.references, own_id] if own_id not in contact.references else contact.references
        try:
            await self.book.remember(
                tenant_id, conversation_id, [own_id], dataclasses.replace(contact, references=refs)
            )
        except TransientError as exc:
            # Sent and marked: an answer to it still joins by References (the customer's own ids) instead.
            log.warning("email_ack_thread_failed", conversation_id=conversation_id, error=repr(exc))


def _skipped(outcome: str) -> str:
    """A due acknowledgement that cannot be sent, counted."""
    ACKS.labels(outcome).inc()
    return outcome
