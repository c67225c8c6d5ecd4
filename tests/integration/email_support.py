"""What the e-mail adapter's tests share: the service run in-process, a capturing relay, reading whole topics."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiosmtpd.smtp import SMTP, Envelope, Session
from google.protobuf.message import Message as ProtoMessage

from switchboard.contracts import TYPE_HEADER, decode
from switchboard.email.service import EmailService, build_service
from switchboard.email.settings import EmailSettings, dev_webhook_secrets
from switchboard.runtime.settings import ServiceSettings
from switchboard.runtime.signing import signed_headers
from tests.conftest import TEST_PARTITIONS

TENANT_DOMAINS = {"shop-a.example": "shop-a", "shop-b.example": "shop-b"}


def email_settings(base: ServiceSettings, relay_port: int = 1, **overrides: Any) -> EmailSettings:
    """EmailSettings on the test's Kafka, Redis and prefixes, with free ports and two shops."""
    values: dict[str, Any] = {
        **base.model_dump(),
        "service_name": "email",
        "smtp_host": "127.0.0.1",
        "smtp_port": 0,
        "smtp_hostname": "mail.switchboard.test",
        "relay_host": "127.0.0.1",
        "relay_port": relay_port,
        "relay_timeout_s": 5.0,
        "tenant_domains": TENANT_DOMAINS,
        **overrides,
    }
    return EmailSettings(**values)


@contextlib.asynccontextmanager
async def running_email(settings: EmailSettings) -> AsyncIterator[EmailService]:
    """The e-mail service serving in this event loop until the block ends (then a graceful stop)."""
    service = await build_service(settings)
    async with service.runtime.serving():
        yield service


@dataclass
class CapturingRelay:
    """An SMTP relay on loopback that keeps what it is handed; `refuse_with` makes it refuse RCPT."""

    messages: list[Message] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    refuse_with: str | None = None
    port: int = 0
    _server: asyncio.Server | None = None

    async def handle_RCPT(  # noqa: N802 (aiosmtpd hook)
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.refuse_with:
            return self.refuse_with
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        self.messages.append(message_from_bytes(envelope.original_content or b""))
        self.envelopes.append((str(envelope.mail_from), list(envelope.rcpt_tos)))
        return "250 2.0.0 queued"

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        # A restart listens on the same port again, as a relay coming back would.
        self._server = await loop.create_server(lambda: SMTP(self, hostname="relay.test"), "127.0.0.1", self.port)
        sockets: Any = self._server.sockets
        self.port = sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None


async def read_all(
    bootstrap: str, topic: str, partitions: int = TEST_PARTITIONS, timeout: float = 30.0
) -> list[tuple[str, ProtoMessage]]:
    """Every record on the topic right now (up to the end offsets taken at the start), in partition order."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        assigned = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        ends = await consumer.end_offsets(assigned)
        found: list[tuple[str, ProtoMessage]] = []
        async with asyncio.timeout(timeout):
            while [tp for tp in assigned if await consumer.position(tp) < ends[tp]]:
                batches = await consumer.getmany(timeout_ms=200)
                for records in batches.values():
                    for r in records:
                        headers = {k: v.decode() for k, v in r.headers}
                        found.append((r.key.decode() if r.key else "", decode(headers.get(TYPE_HEADER), r.value)))
        return found
    finally:
        await consumer.stop()


def signed_mail_headers(tenant: str, raw: bytes, content_type: str = "message/rfc822") -> dict[str, str]:
    """The headers of a webhook post of `raw` to `/v1/email/inbound/<tenant>`, signed with the shop's development
    secret (config/email/dev-webhook-secrets.yaml, which the tests' settings fall back to)."""
    secret = dev_webhook_secrets()[tenant].encode()
    return {"content-type": content_type, **signed_headers(secret, int(time.time()), raw)}
