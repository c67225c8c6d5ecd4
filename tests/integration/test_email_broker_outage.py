"""Kafka stopped and restarted under the e-mail adapter: SMTP 451 and HTTP 503 while it is down, nothing lost.

Starts its own broker (never the shared one) and stops only that. The SMTP client behaves like a sending MTA: a
message answered 451 is sent again later, until it gets its 250.
"""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import make_msgid

import aiosmtplib
import httpx
import pytest

from switchboard.contracts import InboundMessage
from switchboard.runtime.kafka import ensure_topics
from switchboard.runtime.settings import ServiceSettings
from switchboard.runtime.topics import Topics
from switchboard_tools.stack.kafka import LocalKafka
from tests.conftest import TEST_PARTITIONS
from tests.helpers import eventually
from tests.integration.email_support import email_settings, read_all, running_email, signed_mail_headers

pytestmark = pytest.mark.broker


def _mail(n: int) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "buyer@customer.example"
    msg["To"] = "service@shop-a.example"
    msg["Subject"] = f"订单 {n}"
    msg["Message-ID"] = make_msgid(domain="customer.example")
    msg.set_content(f"第 {n} 封邮件：请问发货了吗？")
    return msg


async def _send(port: int, msg: EmailMessage) -> int:
    """The SMTP reply code to DATA (refusals included)."""
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=30)
    await client.connect()
    try:
        await client.mail("buyer@customer.example")
        await client.rcpt("service@shop-a.example")
        try:
            return (await client.data(msg.as_bytes())).code
        except aiosmtplib.SMTPResponseException as exc:
            return exc.code
    finally:
        await client.quit()


async def test_broker_down_means_451_and_503_and_after_restart_nothing_is_lost(
    settings: ServiceSettings, own_kafka: LocalKafka
) -> None:
    await ensure_topics(own_kafka.bootstrap, Topics(settings.topic_prefix).specs(TEST_PARTITIONS))
    own = settings.model_copy(update={"kafka_bootstrap": own_kafka.bootstrap, "produce_timeout_s": 2.0})
    before = [_mail(i) for i in range(3)]
    during = [_mail(i) for i in range(3, 6)]
    async with running_email(email_settings(own)) as service, httpx.AsyncClient(timeout=30) as http:
        port = service.smtp.port
        assert port is not None
        assert [await _send(port, m) for m in before] == [250, 250, 250]

        own_kafka.stop()
        assert [await _send(port, m) for m in during] == [451, 451, 451]
        url = f"http://127.0.0.1:{service.runtime.port}/v1/email/inbound/shop-a"
        raw = during[0].as_bytes()
        down = await http.post(url, content=raw, headers=signed_mail_headers("shop-a", raw))
        assert down.status_code == 503 and down.headers["Retry-After"]
        refused = await http.post(url, content=b"x", headers=signed_mail_headers("shop-a", b"x", "application/json"))
        assert refused.status_code == 503, "a refusal is answered only after its DLQ record is written"

        own_kafka.start()
        pending = list(during)

        async def resent() -> bool:
            # What a sending MTA does with a 451: try again later, until it is taken.
            for msg in list(pending):
                if await _send(port, msg) == 250:
                    pending.remove(msg)
            return not pending

        await eventually(resent, 90, "every deferred message taken after the restart")
        assert await _send(port, before[0]) == 250, "a redelivery after the outage is still one record"

    records = [m for _, m in await read_all(own_kafka.bootstrap, Topics(settings.topic_prefix).inbound)]
    sent_ids = {m["Message-ID"].strip("<>") for m in before + during}
    got = [m.provider_message_id for m in records if isinstance(m, InboundMessage)]
    assert set(got) == sent_ids, "every message that got its 250 is on the topic, none of the others"
    # A send that timed out may still land when the broker is back; its copy has the same message id.
    assert len({m.message_id for m in records if isinstance(m, InboundMessage)}) == len(sent_ids)
