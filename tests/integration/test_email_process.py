"""`python -m switchboard.email` as `switchboard up` starts it: env-only config, SMTP and HTTP, clean SIGTERM exit."""

from __future__ import annotations

import asyncio
import signal
from email.message import EmailMessage

import aiosmtplib
import pytest

from switchboard.contracts import InboundMessage
from switchboard.runtime.settings import ServiceSettings
from switchboard.runtime.topics import Topics
from switchboard_tools.stack.procs import free_port
from tests.helpers import read_topic, service_env, start_service, stop_service
from tests.redis_cluster import on_both_redis_backends

pytestmark = [pytest.mark.broker, on_both_redis_backends]


async def test_the_service_starts_from_env_takes_mail_and_exits_cleanly_on_sigterm(settings: ServiceSettings) -> None:
    http_port, smtp_port = free_port(), free_port()
    env = service_env(
        settings,
        http_port,
        SB_SMTP_HOST="127.0.0.1",
        SB_SMTP_PORT=str(smtp_port),
        SB_SERVICE_NAME="email",
    )
    proc, _ = await start_service("switchboard.email", env)
    try:
        msg = EmailMessage()
        msg["From"] = "buyer@customer.example"
        msg["To"] = "service@shop-a.inbound.switchboard.local"
        msg["Subject"] = "发票"
        msg["Message-ID"] = "<process-test@customer.example>"
        msg.set_content("请问可以开增值税发票吗？")
        _, reply = await aiosmtplib.send(msg, hostname="127.0.0.1", port=smtp_port, timeout=30)
        assert reply.startswith("2.0.0 Accepted")
        [(_, record)] = await read_topic(settings.kafka_bootstrap, Topics(settings.topic_prefix).inbound, 1)
        assert isinstance(record, InboundMessage)
        assert (record.tenant_id, record.text) == ("shop-a", "请问可以开增值税发票吗？")
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        await stop_service(proc)
