"""'Retry later' is honest: a send the broker did not acknowledge in time may still be stored, and a resend with the
same id is safe. Per channel, on a broker of its own (frozen with SIGSTOP while a message is being written, so the
write lands after the adapter gave up on its ack): the sender is told to retry and sends the same message again
with the same id. The inbound topic then holds two records of it, one written before the "retry later" answer (the
abandoned write) and the resend's, both with the message id the resend was acknowledged with, and the agent's desk
gets the message once (docs/chat-widget.md, email.md, phone-api.md).

Each adapter has taken a message before the freeze, so its producer is connected to the partition leader and the
abandoned write reaches the frozen broker's socket. (A producer that still had to connect would wait for the broker
to answer, and drop the record when its request timeout passed: then nothing of it lands.)
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid

import aiosmtplib
import httpx
import pytest
from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection

from switchboard.contracts import InboundMessage
from switchboard.intake.ids import message_id, stable_id
from switchboard.runtime.redis_client import connect_url
from switchboard.runtime.settings import ServiceSettings
from switchboard.runtime.topics import Topics
from switchboard.state.keys import Keys
from switchboard_tools.stack.kafka import LocalKafka
from tests.conftest import _wait_for_broker, topic_settings
from tests.helpers import eventually
from tests.integration.chat_service import chat_settings, connect, next_frame, running_chat, send_message
from tests.integration.email_support import email_settings, read_all, running_email
from tests.integration.phone_service import SHOP_A_KEY, running_phone, segment, started
from tests.integration.router_procs import start_router, stop_router
from tests.router_support import outbox, put_agent

pytestmark = pytest.mark.broker

TENANT = "shop-a"
AGENT = "ada"
GROUPS = ["presales", "orders", "after_sales", "logistics", "complaints", "promotions", "cross_border", "general"]
# Short, so a frozen broker is given up on quickly; the write stays in flight and lands once the broker resumes.
PRODUCE_TIMEOUT_S = 1.5


@dataclass
class Outage:
    """A broker of this module's own, a router on it, and an agent ready to take every channel."""

    kafka: LocalKafka
    settings: ServiceSettings
    redis: Redis
    keys: Keys

    def freeze(self) -> None:
        """SIGSTOP the broker: connections stay open, nothing is answered (a write may land after a timeout)."""
        assert self.kafka.proc is not None
        os.kill(self.kafka.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.kafka.proc is not None
        os.kill(self.kafka.proc.pid, signal.SIGCONT)


@pytest.fixture(scope="module")
async def outage(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> AsyncIterator[Outage]:
    data = tmp_path_factory.mktemp("retry-later")
    kafka = LocalKafka(data / "kafka", heap="384m")
    await asyncio.to_thread(kafka.start)
    redis = connect_url(redis_url)
    router = None
    try:
        await _wait_for_broker(kafka.bootstrap)
        prefix = f"rl{uuid.uuid4().hex[:8]}."
        settings = await topic_settings(
            kafka.bootstrap, redis_url, prefix, service_name="test", shutdown_grace_s=5.0, retry_backoff_s=0.05
        )
        keys = Keys(settings.key_prefix)
        await put_agent(redis, keys, TENANT, AGENT, GROUPS, chat=50, email=50, phone=10)
        router, _ = await start_router(settings, data, "router-rl")
        yield Outage(kafka, settings, redis, keys)
    finally:
        if router is not None:
            await stop_router(router)
        await redis.aclose()
        if kafka.proc is not None and kafka.proc.poll() is None:
            os.kill(kafka.proc.pid, signal.SIGCONT)
        await asyncio.to_thread(kafka.stop)


async def told_to_retry(outage: Outage, send: Callable[[], Awaitable[bool]]) -> float:
    """Freeze the broker, send once (`send` is True when the answer was "retry later"), resume the broker; the
    time (epoch seconds) the answer came."""
    outage.freeze()
    try:
        assert await send(), "a send to a frozen broker must be answered retry later"
        return time.time()
    finally:
        outage.thaw()


async def resend_until_taken(send: Callable[[], Awaitable[bool]], what: str) -> None:
    """What every client does with "retry later": the same message, with the same id, until it is taken."""

    async def taken() -> bool:
        if await send():
            return True
        await asyncio.sleep(0.5)
        return False

    await eventually(taken, 60, what)


async def desk_copies(outage: Outage, message_id: str, sentinel_id: str) -> int:
    """How often the message reached the agent's desk, once the sentinel (sent after it, in the same conversation,
    so every record before it was routed) is there."""

    async def on_desk() -> bool:
        events = await outbox(outage.redis, outage.keys, TENANT, AGENT)
        return any(e.message.message_id == sentinel_id for e in events)

    await eventually(on_desk, 60, f"{sentinel_id} on the desk")
    events = await outbox(outage.redis, outage.keys, TENANT, AGENT)
    return sum(e.message.message_id == message_id for e in events)


async def records_of(outage: Outage, provider_id: str) -> list[InboundMessage]:
    """The inbound records of one provider message (the sender's id), in the order written."""
    found = await read_all(outage.kafka.bootstrap, Topics(outage.settings.topic_prefix).inbound)
    mine = [m for _, m in found if isinstance(m, InboundMessage) and m.provider_message_id == provider_id]
    return sorted(mine, key=lambda m: m.received_at.ToNanoseconds())


async def assert_abandoned_write_landed(outage: Outage, provider_id: str, acked_id: str, answered_at: float) -> None:
    """The write the adapter gave up on landed (one record received before the "retry later" answer went out), the
    resend wrote another after it (more, had a resend timed out too on a slow machine), and every copy carries the
    message id the resend was acknowledged with."""
    records = await records_of(outage, provider_id)
    received = [m.received_at.ToNanoseconds() / 1e9 for m in records]
    before = sum(at < answered_at for at in received)
    assert (before, len(records) - before >= 1) == (1, True), (received, answered_at)
    assert {m.message_id for m in records} == {acked_id}


async def widget_answer(ws: ClientConnection, client_msg_id: str) -> dict[str, object]:
    async with asyncio.timeout(30):
        while True:
            frame: dict[str, object] = json.loads(await ws.recv())
            if frame["type"] in ("ack", "error") and frame.get("client_msg_id") == client_msg_id:
                return frame


async def test_chat_a_widget_message_resent_after_retry_later_reaches_the_desk_once(outage: Outage) -> None:
    cs = chat_settings(outage.settings, produce_timeout_s=PRODUCE_TIMEOUT_S, chat_retry_after_s=1)
    acked: dict[str, str] = {}
    async with running_chat(cs) as chat, connect(chat.ws_url(TENANT, "rl-buyer")) as ws:
        await next_frame(ws, "hello")

        async def send(client_msg_id: str, text: str) -> bool:
            await send_message(ws, client_msg_id, text=text)
            answer = await widget_answer(ws, client_msg_id)
            if answer["type"] == "ack":
                acked[client_msg_id] = str(answer["message_id"])
                return True
            assert answer["code"] == "retry_later", answer
            return False

        async def first_try() -> bool:
            return not await send("r1", "这件有M码吗")

        # A message taken before the freeze: the producer is connected to the partition leader, so the write of
        # the next one reaches the frozen broker's socket (and lands when it resumes) instead of waiting to connect.
        await resend_until_taken(lambda: send("r0", "你好"), "r0 acked")
        answered_at = await told_to_retry(outage, first_try)
        await resend_until_taken(lambda: send("r1", "这件有M码吗"), "r1 acked")
        await resend_until_taken(lambda: send("r2", "在吗"), "r2 acked")
    # The widget's provider id of a frame (docs/state.md): the customer and the frame's client_msg_id.
    await assert_abandoned_write_landed(outage, f"ws:{stable_id('rl-buyer')}:r1", acked["r1"], answered_at)
    assert await desk_copies(outage, acked["r1"], acked["r2"]) == 1


def _mail(subject: str, text: str, in_reply_to: str = "") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "rl-buyer@customer.example"
    msg["To"] = "service@shop-a.example"
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain="customer.example")
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
        msg["References"] = in_reply_to
    msg.set_content(text)
    return msg


async def _smtp(port: int, msg: EmailMessage) -> tuple[int, str]:
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=30)
    await client.connect()
    try:
        await client.ehlo()
        await client.mail("rl-buyer@customer.example")
        await client.rcpt("service@shop-a.example")
        try:
            response = await client.data(msg.as_bytes())
        except aiosmtplib.SMTPResponseException as exc:
            return exc.code, exc.message
        return response.code, response.message
    finally:
        await client.quit()


async def test_email_a_mail_sent_again_after_451_reaches_the_desk_once(outage: Outage) -> None:
    es = email_settings(outage.settings, produce_timeout_s=PRODUCE_TIMEOUT_S)
    # Pre-sales questions: that group assigns at once (a group with offers would show a message once per offer).
    earlier = _mail("发票", "可以开发票吗？")
    first = _mail("尺码", "这件外套有M码吗？")
    follow_up = _mail("Re: 尺码", "还有货吗？", in_reply_to=first["Message-ID"])
    ids: dict[str, str] = {}
    async with running_email(es) as service:
        port = service.smtp.port
        assert port is not None

        async def send(msg: EmailMessage) -> bool:
            code, text = await _smtp(port, msg)
            if code == 250:
                ids[msg["Message-ID"]] = text.split()[-1]
                return True
            assert code == 451, (code, text)
            return False

        async def first_try() -> bool:
            return not await send(first)

        # An earlier mail taken before the freeze (the producer connected to the partition leader, see chat).
        await resend_until_taken(lambda: send(earlier), "the earlier mail taken")
        answered_at = await told_to_retry(outage, first_try)
        # What a sending MTA does with a 451: the very same message again, later.
        await resend_until_taken(lambda: send(first), "the mail taken")
        await resend_until_taken(lambda: send(follow_up), "the follow-up taken")
    mid = ids[first["Message-ID"]]
    await assert_abandoned_write_landed(outage, first["Message-ID"].strip("<>"), mid, answered_at)
    assert await desk_copies(outage, mid, ids[follow_up["Message-ID"]]) == 1


async def test_phone_a_segment_resent_after_503_reaches_the_desk_once(outage: Outage) -> None:
    call = f"rl-{uuid.uuid4().hex[:8]}"
    async with (
        running_phone(outage.settings, produce_timeout_s=PRODUCE_TIMEOUT_S, phone_reorder_window_s=0.5) as phone,
        httpx.AsyncClient(base_url=phone.http, headers=SHOP_A_KEY, timeout=30) as http,
    ):
        answer = await http.post("/v1/phone/events", json=[started(call), segment(call, 1, "我想查一下订单")])
        assert answer.status_code == 200, answer.text
        results: dict[int, str] = {}
        refs: dict[int, str] = {}

        async def send(seq: int, text: str) -> bool:
            response = await http.post("/v1/phone/events", json=[segment(call, seq, text)])
            if response.status_code == 200:
                # The switchboard message id of the segment: the one its resend gets too (intake/ids.py).
                refs[seq] = response.json()["results"][0]["ref"]
                results[seq] = message_id(TENANT, "CHANNEL_PHONE", refs[seq])
                return True
            assert response.status_code == 503, response.text
            return False

        async def first_try() -> bool:
            return not await send(2, "订单号是 20240101")

        # Segment 1, taken before the freeze, connected the producer to the partition leader (see chat).
        answered_at = await told_to_retry(outage, first_try)
        await resend_until_taken(lambda: send(2, "订单号是 20240101"), "segment 2 taken")
        await resend_until_taken(lambda: send(3, "什么时候发货"), "segment 3 taken")
    await assert_abandoned_write_landed(outage, refs[2], results[2], answered_at)
    assert await desk_copies(outage, results[2], results[3]) == 1
