"""The one way in for a customer's e-mail, shared by the SMTP server and the HTTP webhook.

`EmailInbox.receive(raw, recipients, envelope_sender, via)` decides, and says so as a Verdict the edges turn into
an SMTP reply or an HTTP status: accepted (the broker acked the record), duplicate, not routed (auto-reply, bounce,
list mail), refused (with a DLQ record), or retry later (Kafka or Redis down: nothing was taken).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
from dataclasses import dataclass

from switchboard.contracts import Attachment, Channel, EmailDetail, InboundMessage, MessageKind
from switchboard.email.loops import loop_reason
from switchboard.email.metrics import NOT_ROUTED, RECEIVED
from switchboard.email.parse import Limits, ParsedEmail, parse_email
from switchboard.email.render import dead_letter_view
from switchboard.email.settings import EmailSettings
from switchboard.email.tenants import TenantDirectory, normalise_address
from switchboard.email.threads import Contact, ThreadBook, thread_root
from switchboard.intake.accept import Intake, Outcome
from switchboard.intake.customers import CustomerContact, CustomerTiers
from switchboard.intake.language import detect_language
from switchboard.intake.tally import InboundOutcome
from switchboard.runtime.errors import BrokerUnavailable, InvalidRecord, TransientError
from switchboard.runtime.logs import get_logger
from switchboard.runtime.pii import keyed_id, mask_email, mask_pii

log = get_logger(__name__)

# Parsing a large message takes a while; do it off the event loop so other sessions keep flowing.
PARSE_IN_THREAD_BYTES = 256 * 1024


class Result(enum.Enum):
    """What became of one received e-mail."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    NOT_ROUTED = "not_routed"
    REFUSED = "refused"
    RETRY_LATER = "retry_later"


# What the inbox answers without the intake counting it (the intake counts accepted, duplicate and refused).
_COUNTED_HERE = frozenset({Result.NOT_ROUTED, Result.RETRY_LATER})

# error type → (SMTP reply code and enhanced status, HTTP status)
_REFUSALS: dict[str, tuple[str, int]] = {
    "unknown_recipient": ("550 5.1.1", 422),
    "too_large": ("552 5.3.4", 413),
    "too_many_parts": ("554 5.6.0", 422),
    "too_deep": ("554 5.6.0", 422),
    "no_sender": ("550 5.1.7", 422),
    "empty": ("554 5.6.0", 422),
    "unsupported_media_type": ("554 5.6.1", 415),
}


@dataclass(frozen=True)
class Verdict:
    """The answer to a sender: an SMTP reply line and an HTTP status that mean the same."""

    result: Result
    smtp: str
    http_status: int
    detail: str
    message_ids: tuple[str, ...] = ()
    conversation_ids: tuple[str, ...] = ()


def _retry(detail: str) -> Verdict:
    return Verdict(Result.RETRY_LATER, f"451 4.3.0 {detail}, try again later", 503, detail)


def _taken(accepted: list[str], duplicates: list[str], conversations: list[str]) -> Verdict:
    ids = tuple(accepted + duplicates)
    if accepted:
        return Verdict(
            Result.ACCEPTED, f"250 2.0.0 Accepted as {' '.join(ids)}", 202, "accepted", ids, tuple(conversations)
        )
    return Verdict(
        Result.DUPLICATE, f"250 2.0.0 Already accepted as {' '.join(ids)}", 200, "duplicate", ids, tuple(conversations)
    )


class EmailInbox:
    """Takes raw messages for the shops' addresses and writes them to the inbound topic, once each."""

    def __init__(
        self,
        settings: EmailSettings,
        intake: Intake,
        book: ThreadBook,
        tenants: TenantDirectory,
        tiers: CustomerTiers | None = None,
    ) -> None:
        self.settings = settings
        self.intake = intake
        self.book = book
        self.tenants = tenants
        self.tiers = tiers
        self.limits = Limits(settings.max_attachment_bytes, settings.max_parts, settings.max_depth)

    async def receive(self, raw: bytes, recipients: list[str], envelope_sender: str | None, via: str) -> Verdict:
        """Decide about one message and act on it; never raises."""
        try:
            verdict = await self._receive(raw, recipients, envelope_sender, via)
        except InvalidRecord as exc:
            verdict = await self.refuse(raw, via, exc.reason, exc.error_type, recipients)
        except BrokerUnavailable:
            verdict = _retry("Kafka did not acknowledge the message")
        except TransientError as exc:
            verdict = _retry(str(exc).split(":")[0])
        except Exception as exc:  # a bug must cost one message a clear refusal, never the server
            log.exception("email_failed", via=via)
            verdict = await self.refuse(
                raw, via, f"the message could not be processed ({type(exc).__name__})", "internal_error", recipients
            )
        RECEIVED.labels(verdict.result.value, via.partition(":")[0]).inc()
        if verdict.result in _COUNTED_HERE:
            tenants = list(self.recipients_by_tenant(recipients))
            self.intake.tally.count(tenants[0] if tenants else "", InboundOutcome(verdict.result.value))
        return verdict

    async def _receive(self, raw: bytes, recipients: list[str], envelope_sender: str | None, via: str) -> Verdict:
        by_tenant = self.recipients_by_tenant(recipients)
        if not by_tenant:
            raise InvalidRecord("no shop receives mail at the recipient address", "unknown_recipient")
        if len(raw) > self.settings.max_message_bytes:
            raise InvalidRecord(f"message is larger than {self.settings.max_message_bytes} bytes", "too_large")
        if len(raw) > PARSE_IN_THREAD_BYTES:
            parsed = await asyncio.to_thread(parse_email, raw, self.limits)
        else:
            parsed = parse_email(raw, self.limits)
        reason = loop_reason(parsed.message, envelope_sender, self.settings.smtp_hostname)
        if reason is not None:
            NOT_ROUTED.labels(reason).inc()
            log.info("email_not_routed", reason=reason, via=via)
            return Verdict(Result.NOT_ROUTED, f"250 2.0.0 Taken, not routed to an agent ({reason})", 200, reason)
        if not parsed.from_address:
            sender = normalise_address(envelope_sender or "")
            if not sender:
                raise InvalidRecord("the message names no sender address to reply to", "no_sender")
            parsed.from_address = sender
        if not (parsed.text or parsed.subject or parsed.attachments):
            raise InvalidRecord("the message has no text, subject or attachment", "empty")
        provider_id = parsed.message_id or "sha256:" + hashlib.sha256(raw).hexdigest()
        accepted: list[str] = []
        duplicates: list[str] = []
        conversations: list[str] = []
        for tenant_id, addresses in by_tenant.items():
            outcome, message_id, conversation_id = await self._accept(parsed, provider_id, tenant_id, addresses)
            (accepted if outcome is Outcome.ACCEPTED else duplicates).append(message_id)
            conversations.append(conversation_id)
        return _taken(accepted, duplicates, conversations)

    def recipients_by_tenant(self, recipients: list[str]) -> dict[str, list[str]]:
        """The shop addresses among the recipients, grouped by tenant (unknown addresses are left out)."""
        grouped: dict[str, list[str]] = {}
        for rcpt in recipients:
            tenant_id = self.tenants.tenant_for(rcpt)
            if tenant_id is not None:
                grouped.setdefault(tenant_id, []).append(normalise_address(rcpt))
        return grouped

    async def _accept(
        self, parsed: ParsedEmail, provider_id: str, tenant_id: str, addresses: list[str]
    ) -> tuple[Outcome, str, str]:
        conversation_id = await self.book.conversation_for(
            tenant_id, parsed.from_address, parsed.message_id, parsed.in_reply_to, parsed.references
        )
        # Thread links and the reply contact are derived from the message alone, so writing them before the
        # broker's ack is harmless when the send fails: the retry writes the same values.
        language = detect_language(f"{parsed.subject}\n{parsed.text}")
        # Masked once, for the record and the reply contact alike: a subject is customer text.
        subject = mask_pii(parsed.subject)
        contact = Contact(
            customer_address=parsed.from_address,
            shop_address=addresses[0],
            subject=subject,
            last_message_id=parsed.message_id,
            references=[*parsed.references, parsed.message_id] if parsed.message_id else parsed.references,
            language=language,
        )
        await self.book.remember(tenant_id, conversation_id, [parsed.message_id], contact)
        record = self._record(parsed, tenant_id, conversation_id, addresses, subject)
        # The record and the acknowledgement mail (ack.py) speak of the same language.
        record.language = language
        await self._tier(record, tenant_id, parsed.from_address)
        result = await self.intake.accept(record, provider_id)
        log.info(
            "email_accepted",
            tenant_id=tenant_id,
            conversation_id=conversation_id,
            message_id=result.message_id,
            outcome=result.outcome.value,
        )
        return result.outcome, result.message_id, conversation_id

    async def _tier(self, record: InboundMessage, tenant_id: str, address: str) -> None:
        """The sender's member tier from the shop's customer lookup (or its static map); none when it fails."""
        if self.tiers is None:
            return
        tier = await self.tiers.tier_of(tenant_id, CustomerContact("email", record.customer.customer_id, address))
        record.customer.member_tier, record.customer.tier_source = tier.member_tier, tier.source

    def _record(
        self, parsed: ParsedEmail, tenant_id: str, conversation_id: str, addresses: list[str], subject: str
    ) -> InboundMessage:
        record = InboundMessage(
            tenant_id=tenant_id,
            conversation_id=conversation_id,
            channel=Channel.CHANNEL_EMAIL,
            kind=MessageKind.MESSAGE_KIND_TEXT,
            text=parsed.text or parsed.subject,
            email=EmailDetail(
                message_id=parsed.message_id,
                in_reply_to=parsed.in_reply_to,
                references=parsed.references,
                subject=subject,
                from_address_masked=mask_email(parsed.from_address),
                to_addresses=addresses,
                thread_root=thread_root(parsed.message_id, parsed.in_reply_to, parsed.references),
            ),
        )
        record.customer.customer_id = keyed_id(self.settings.customer_key(), tenant_id, "email", parsed.from_address)
        record.customer.display_name = mask_pii(parsed.from_name)
        record.customer.contact_masked = mask_email(parsed.from_address)
        if parsed.sent_at is not None:
            with contextlib.suppress(ValueError, OverflowError):  # a Date header out of Timestamp's range
                record.sent_at.FromDatetime(parsed.sent_at)
        record.attachments.extend(
            Attachment(name=mask_pii(a.name), content_type=a.content_type, size_bytes=a.size_bytes, sha256=a.sha256)
            for a in parsed.attachments
        )
        return record

    async def refuse(
        self,
        raw: bytes,
        via: str,
        reason: str,
        error_type: str,
        recipients: list[str],
        *,
        is_message: bool = True,
        tenant_id: str = "",
    ) -> Verdict:
        """Record refused input in the DLQ (masked) and say why; 451/503 when even that cannot be recorded.

        `raw` is a message (kept as its decoded view) unless `is_message` is False (kept as it is, e.g. an envelope).
        The record's tenant is `tenant_id` when given (the shop that signed the request), else the first recipient's.
        """
        code, http_status = _REFUSALS.get(error_type, ("554 5.6.0", 422))
        tenants = [tenant_id] if tenant_id else list(self.recipients_by_tenant(recipients))
        try:
            await self.intake.reject(
                source=via,
                reason=reason,
                error_type=error_type,
                raw=dead_letter_view(raw) if is_message else raw,
                tenant_id=tenants[0] if tenants else "",
            )
        except TransientError:
            # The refusal could not be recorded: the sender tries again later and is refused then.
            return _retry("Kafka did not acknowledge the refusal record")
        return Verdict(Result.REFUSED, f"{code} {reason}", http_status, reason)
