"""The SMTP server customers' mail arrives at (aiosmtpd on the service's own event loop).

RCPT refuses addresses no shop receives mail at (550, with a DLQ record of the envelope), so a sender learns it
per recipient. DATA answers only
after the inbox decided: 250 once Kafka acknowledged the record (or it was a duplicate, or an auto-reply that is
not routed), 451 when Kafka or Redis is down, 5xx with the reason for refused input.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from switchboard.email.inbox import EmailInbox
from switchboard.email.settings import EmailSettings
from switchboard.runtime.logs import get_logger

log = get_logger(__name__)
# aiosmtpd logs every SMTP command at info level; the adapter logs one line per message instead.
logging.getLogger("mail.log").setLevel(logging.WARNING)

# aiosmtpd refuses bigger DATA itself with 552 before the handler sees it; between max_message_bytes and this the
# handler refuses with a DLQ record. The hard cap bounds memory per session.
HARD_LIMIT_FACTOR = 2


class InboxHandler:
    """aiosmtpd handler hooks: RCPT checks the tenant, DATA hands the message to the inbox."""

    def __init__(self, inbox: EmailInbox) -> None:
        self.inbox = inbox

    async def handle_RCPT(  # noqa: N802 (aiosmtpd's hook name)
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        """Take a recipient only when a shop receives mail there."""
        if self.inbox.tenants.tenant_for(address) is None:
            # Recorded like any refused input, so a shop whose domain is missing from the table shows up in the DLQ.
            envelope_line = f"MAIL FROM:<{envelope.mail_from or ''}> RCPT TO:<{address}>".encode()
            verdict = await self.inbox.refuse(
                envelope_line,
                "smtp",
                "no shop receives mail at this address",
                "unknown_recipient",
                [],
                is_message=False,
            )
            return verdict.smtp
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        """Answer with what the inbox decided."""
        # decode_data=False: original_content is the message exactly as it came, bytes.
        content = envelope.original_content or b""
        verdict = await self.inbox.receive(content, list(envelope.rcpt_tos), envelope.mail_from, "smtp")
        return verdict.smtp


class SmtpServer:
    """The listening socket and its sessions."""

    def __init__(self, settings: EmailSettings, inbox: EmailInbox) -> None:
        self.settings = settings
        self.handler = InboxHandler(inbox)
        self._server: asyncio.Server | None = None
        self.port: int | None = None

    def _protocol(self) -> SMTP:
        return SMTP(
            self.handler,
            data_size_limit=self.settings.max_message_bytes * HARD_LIMIT_FACTOR,
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname=self.settings.smtp_hostname,
            ident="switchboard email",
            timeout=self.settings.smtp_idle_timeout_s,
        )

    async def start(self) -> None:
        """Listen on smtp_host:smtp_port (port 0 picks a free one, see `port`)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, self.settings.smtp_host, self.settings.smtp_port)
        sockets: Any = self._server.sockets
        self.port = sockets[0].getsockname()[1]
        log.info("smtp_listening", host=self.settings.smtp_host, port=self.port)

    def stop_intake(self) -> None:
        """Stop accepting new connections (sessions in progress finish their transaction)."""
        if self._server is not None:
            self._server.close()

    async def close(self) -> None:
        """Close the listener and wait for it."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
