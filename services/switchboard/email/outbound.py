"""Agents' replies out by SMTP: consume `sb.outbound.v1`, take the e-mail ones, hand them to the relay.

Each reply gets Message-ID `<outbound message id@smtp_hostname>` (so a resend after a crash carries the same id
and mail clients show it once), In-Reply-To the customer's last message, References the thread, and "Re: subject".
Its Message-ID is remembered for the conversation, so the customer's answer to it joins the same conversation.
A relay that is down or answers 4xx is a transient error (the consumer retries and pauses); a 5xx refusal of the
reply, or a conversation no e-mail ever came from, sends the record to the DLQ.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from datetime import UTC
from email.message import EmailMessage
from email.utils import format_datetime, formataddr

import aiosmtplib
from redis.exceptions import RedisError

from switchboard.contracts import Channel, OutboundMessage
from switchboard.email.metrics import REPLIES_SENT
from switchboard.email.settings import EmailSettings
from switchboard.email.threads import MAX_REFERENCES_KEPT, Contact, ThreadBook
from switchboard.runtime.consumer import Delivery, Rejected
from switchboard.runtime.errors import TransientError
from switchboard.runtime.kafka import now_timestamp
from switchboard.runtime.logs import get_logger
from switchboard.runtime.redis_client import redis_unavailable_as_transient
from switchboard.state.keys import Keys

log = get_logger(__name__)

CONSUMER_NAME = "email-outbound"
_REPLY_PREFIX = re.compile(r"^\s*(?:re|aw|sv|回复|回覆|答复)\s*[:：]", re.IGNORECASE)
SENT_TTL_S = 7 * 24 * 3600


def reply_subject(subject: str) -> str:
    """ "Re: " + the customer's subject, unless it already is a reply ("Re:", "回复:")."""
    subject = subject.strip() or "(no subject)"
    return subject if _REPLY_PREFIX.match(subject) else f"Re: {subject}"


def compose_reply(reply: OutboundMessage, contact: Contact, settings: EmailSettings) -> EmailMessage:
    """The e-mail of one agent reply, threaded under the customer's last message."""
    msg = EmailMessage()
    shop = contact.shop_address or f"{settings.reply_from_local_part}@{settings.smtp_hostname}"
    msg["From"] = formataddr(("", shop))
    msg["To"] = contact.customer_address
    msg["Subject"] = reply_subject(contact.subject)
    msg["Message-ID"] = reply_message_id(reply, settings)
    if contact.last_message_id:
        msg["In-Reply-To"] = f"<{contact.last_message_id}>"
    refs = contact.references[-MAX_REFERENCES_KEPT:]
    if refs:
        msg["References"] = " ".join(f"<{r}>" for r in refs)
    sent = reply.sent_at if reply.HasField("sent_at") else now_timestamp()
    msg["Date"] = format_datetime(sent.ToDatetime(tzinfo=UTC))
    text = reply.text
    links = [a.url for a in reply.attachments if a.url]
    if links:
        text += "\n\n" + "\n".join(links)
    msg.set_content(text or " ", charset="utf-8")
    return msg


def reply_message_id(reply: OutboundMessage, settings: EmailSettings) -> str:
    """The Message-ID header of an agent reply: stable for the outbound record."""
    return f"<{reply.message_id}@{settings.smtp_hostname}>"


class ReplySender:
    """The outbound consumer's handler: sends each e-mail reply once, in the conversation's order."""

    def __init__(self, settings: EmailSettings, book: ThreadBook, keys: Keys) -> None:
        self.settings = settings
        self.book = book
        self.keys = keys

    async def handle(self, batch: Sequence[Delivery]) -> Sequence[Rejected]:
        """Send the e-mail replies of one partition batch; other channels' replies are not ours."""
        rejected: list[Rejected] = []
        for delivery in batch:
            reply = delivery.message
            if not isinstance(reply, OutboundMessage) or reply.channel != Channel.CHANNEL_EMAIL:
                continue
            try:
                problem = await self._send_once(reply)
            except TransientError:
                raise
            except Exception as exc:  # one reply that cannot be composed must not stop the others
                log.exception("reply_failed", message_id=reply.message_id)
                problem = f"the reply could not be composed ({type(exc).__name__}: {exc})"
            if problem is not None:
                REPLIES_SENT.labels("refused").inc()
                rejected.append(Rejected(delivery, problem, "undeliverable"))
        return rejected

    async def _send_once(self, reply: OutboundMessage) -> str | None:
        if not reply.tenant_id or not reply.conversation_id or not reply.message_id:
            return "reply has no tenant, conversation or message id"
        sent_key = self.keys.processed(reply.tenant_id, CONSUMER_NAME, reply.message_id)
        with redis_unavailable_as_transient():
            if await self.book.redis.exists(sent_key):
                return None
        contact = await self.book.contact(reply.tenant_id, reply.conversation_id)
        if contact is None or not contact.customer_address:
            return "no e-mail was received in this conversation, so there is no address to reply to"
        message = compose_reply(reply, contact, self.settings)
        problem = await relay(message, self.settings)
        if problem is not None:
            return problem
        own_id = reply_message_id(reply, self.settings).strip("<>")
        refs = [*contact.references, own_id] if own_id not in contact.references else contact.references
        await self.book.remember(
            reply.tenant_id, reply.conversation_id, [own_id], dataclasses.replace(contact, references=refs)
        )
        try:
            await self.book.redis.set(sent_key, b"1", ex=SENT_TTL_S)
        except RedisError as exc:
            # Sent but not marked: a redelivery would send it again with the same Message-ID.
            log.warning("reply_mark_failed", message_id=reply.message_id, error=repr(exc))
        REPLIES_SENT.labels("sent").inc()
        log.info(
            "reply_sent", tenant_id=reply.tenant_id, conversation_id=reply.conversation_id, message_id=reply.message_id
        )
        return None


async def relay(message: EmailMessage, settings: EmailSettings) -> str | None:
    """Hand a message to the relay (the one SMTP way out, for replies and acknowledgements alike); a permanent
    refusal is returned, anything else raised as TransientError."""
    try:
        await aiosmtplib.send(
            message,
            hostname=settings.relay_host,
            port=settings.relay_port,
            username=settings.relay_username,
            password=settings.relay_password,
            start_tls=settings.relay_starttls,
            timeout=settings.relay_timeout_s,
        )
    except aiosmtplib.SMTPRecipientsRefused as exc:
        codes = [r.code for r in exc.recipients]
        if all(c >= 500 for c in codes):
            return f"the relay refused the customer's address ({codes})"
        raise TransientError(f"relay deferred the recipient: {exc}") from exc
    except aiosmtplib.SMTPResponseException as exc:
        if exc.code >= 500:
            return f"the relay refused the message: {exc.code} {exc.message}"
        raise TransientError(f"relay answered {exc.code}: {exc.message}") from exc
    except (aiosmtplib.SMTPException, OSError) as exc:
        raise TransientError(f"relay unreachable: {exc!r}") from exc
    return None
