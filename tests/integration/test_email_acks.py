"""Acknowledgement mails to waiting e-mail customers: real SMTP in and out, real Kafka and Redis.

While the tenant's surge profile has `customer_updates.email`, a conversation the router queues gets one mail with
the expected answer time, threaded under the customer's mail, however often the QUEUED decision is read and
however many replicas read it; without the profile, for a conversation an agent already has, or for a no-reply
sender, none. The last test runs the real router: the mail goes in by SMTP and the acknowledgement comes out.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from email.message import EmailMessage, Message
from email.utils import make_msgid
from pathlib import Path

import aiosmtplib
import pytest
from redis.asyncio import Redis

from switchboard.contracts import Channel, InboundMessage, RoutingEvent, RoutingEventType
from switchboard.email.ack import AckSender
from switchboard.email.threads import ThreadBook
from switchboard.runtime.errors import TransientError
from switchboard.runtime.kafka import RecordProducer
from switchboard.runtime.settings import ServiceSettings
from switchboard.runtime.topics import Topics
from switchboard.state.keys import Keys
from tests.helpers import eventually
from tests.integration.email_support import CapturingRelay, email_settings, read_all, running_email
from tests.integration.router_procs import start_router, stop_router
from tests.integration.updates_support import put_estimate, put_queued, switch_on
from tests.router_support import presence_record, put_agent

pytestmark = pytest.mark.broker


def customer_mail(sender: str, text: str, subject: str, to: str = "service@shop-a.example") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain="customer.example")
    msg.set_content(text)
    return msg


async def send(port: int, msg: EmailMessage) -> str:
    """Send a customer's mail to the adapter's SMTP server; the message id it was accepted as."""
    response = await aiosmtplib.send(msg, hostname="127.0.0.1", port=port, timeout=30)
    return response[1].split()[-1]


async def conversation_of(settings: ServiceSettings, message_id: str) -> str:
    """The conversation the adapter put an accepted mail in (from the inbound topic)."""
    for _, record in await read_all(settings.kafka_bootstrap, Topics(settings.topic_prefix).inbound):
        if isinstance(record, InboundMessage) and record.message_id == message_id:
            return record.conversation_id
    raise AssertionError(f"{message_id} is not on the inbound topic")


def queued(tenant: str, conversation: str, event_id: str) -> RoutingEvent:
    """The router's QUEUED decision for an e-mail conversation."""
    return RoutingEvent(
        event_id=event_id,
        tenant_id=tenant,
        conversation_id=conversation,
        type=RoutingEventType.ROUTING_EVENT_QUEUED,
        channel=Channel.CHANNEL_EMAIL,
        skill_group="after_sales",
        queue_position=3,
    )


def acks_to(relay: CapturingRelay, address: str) -> list[Message]:
    return [m for m in relay.messages if m["To"] == address and m["Auto-Submitted"] == "auto-replied"]


async def test_a_queued_mail_is_acknowledged_once_with_the_expected_time(
    settings: ServiceSettings, redis: Redis, producer: RecordProducer
) -> None:
    keys, topics = Keys(settings.key_prefix), Topics(settings.topic_prefix)
    relay = CapturingRelay()
    await relay.start()
    es = email_settings(settings, relay.port)
    try:
        async with running_email(es) as service:
            assert service.smtp.port is not None
            question = customer_mail("li.lei@customer.example", "My parcel arrived broken, I want a refund.", "Refund")
            conv = await conversation_of(settings, await send(service.smtp.port, question))
            await switch_on(redis, keys, "shop-a", email=True)
            # The router queued it third in after-sales' e-mail queue; 15 minutes a place in that queue.
            await put_estimate(redis, keys, "shop-a", "after_sales", "email", 900, 3)
            await put_queued(redis, keys, "shop-a", conv, "after_sales", "email", ahead=2)
            # The decision read twice (a redelivery after a crash, a second router decision).
            await producer.send_many(
                topics.routing, [(conv, queued("shop-a", conv, "ev-1")), (conv, queued("shop-a", conv, "ev-2"))]
            )

            async def acknowledged() -> bool:
                return bool(acks_to(relay, "li.lei@customer.example"))

            await eventually(acknowledged, 30, "the acknowledgement at the relay")
            # Another replica handed the same decision acknowledges nothing more.
            other = AckSender(es.model_copy(update={"instance_id": "email-2"}), ThreadBook(redis, keys, 3600), keys)
            assert await other.acknowledge("shop-a", conv) == "already_sent"
            await asyncio.sleep(1.5)
            [ack] = acks_to(relay, "li.lei@customer.example")
            assert ack["In-Reply-To"] == question["Message-ID"] and question["Message-ID"] in ack["References"]
            assert ack["Subject"] == "Re: Refund" and ack["From"] == "service@shop-a.example"
            body = ack.get_payload(decode=True).decode()
            assert "2 customers are ahead of you" in body and "within about 45 minutes" in body, body
            # The customer answers the acknowledgement: it joins the same conversation.
            answer = customer_mail("li.lei@customer.example", "Photos attached.", "Re: Refund")
            answer["In-Reply-To"] = ack["Message-ID"]
            assert await conversation_of(settings, await send(service.smtp.port, answer)) == conv
    finally:
        await relay.stop()


async def test_no_acknowledgement_without_the_profile_for_a_taken_or_drained_conversation_or_a_no_reply_sender(
    settings: ServiceSettings, redis: Redis, producer: RecordProducer
) -> None:
    keys, topics = Keys(settings.key_prefix), Topics(settings.topic_prefix)
    relay = CapturingRelay()
    await relay.start()
    es = email_settings(settings, relay.port)
    try:
        async with running_email(es) as service:
            assert service.smtp.port is not None
            port = service.smtp.port
            off = await conversation_of(
                settings,
                await send(port, customer_mail("b@customer.example", "发票怎么开？", "发票", "s@shop-b.example")),
            )
            robot = await conversation_of(
                settings, await send(port, customer_mail("noreply@platform.example", "订单通知", "通知"))
            )
            taken = await conversation_of(
                settings, await send(port, customer_mail("c@customer.example", "在吗", "咨询"))
            )
            drained = await conversation_of(
                settings, await send(port, customer_mail("e@customer.example", "能开专票吗", "发票"))
            )
            last = await conversation_of(
                settings, await send(port, customer_mail("d@customer.example", "地址写错了", "改地址"))
            )
            await switch_on(redis, keys, "shop-a", email=True)  # shop-b has no profile in force
            # Each first in a queue of its own.
            for tenant, conv, group in (
                ("shop-b", off, "presales"),
                ("shop-a", robot, "orders"),
                ("shop-a", taken, "logistics"),
                ("shop-a", drained, "promotions"),
                ("shop-a", last, "after_sales"),
            ):
                await put_queued(redis, keys, tenant, conv, group, "email", ahead=0)
            await redis.hset(keys.conversation("shop-a", taken), "state", "assigned")  # an agent took it meanwhile
            # Queued by a plan that found an agent's room changed: the router's drain assigns it a moment later.
            just_now = queued("shop-a", drained, "ev-drained")
            just_now.at.GetCurrentTime()
            # One key, so one partition: when `last` is acknowledged, the four before it were handled.
            await producer.send_many(
                topics.routing,
                [("k", queued(t, c, f"ev-{c}")) for t, c in (("shop-b", off), ("shop-a", robot), ("shop-a", taken))]
                + [("k", just_now), ("k", queued("shop-a", last, "ev-last"))],
            )
            await asyncio.sleep(0.3)
            await redis.hset(keys.conversation("shop-a", drained), "state", "assigned")

            async def last_acknowledged() -> bool:
                return bool(acks_to(relay, "d@customer.example"))

            await eventually(last_acknowledged, 30, "the acknowledgement of the last conversation")
            assert [m["To"] for m in relay.messages] == ["d@customer.example"]
            body = relay.messages[0].get_payload(decode=True).decode()
            assert "您是下一位" in body and "预计约 10 分钟内回复您" in body, "Chinese mail, the fallback 600 s"
    finally:
        await relay.stop()


async def test_the_router_queues_a_mail_and_the_customer_is_told_when_to_expect_the_answer(
    settings: ServiceSettings, redis: Redis, producer: RecordProducer, tmp_path: Path
) -> None:
    keys = Keys(settings.key_prefix)
    await switch_on(redis, keys, "shop-a", email=True)
    relay = CapturingRelay()
    await relay.start()
    router, _ = await start_router(settings, tmp_path, "router-acks")
    try:
        async with running_email(email_settings(settings, relay.port)) as service:
            assert service.smtp.port is not None
            # Nobody serves pre-sales e-mail: the router queues the first mail.
            waiting = customer_mail("wang@customer.example", "这件外套有黑色M码吗？", "咨询外套")
            first = await conversation_of(settings, await send(service.smtp.port, waiting))

            async def acknowledged() -> bool:
                return bool(acks_to(relay, "wang@customer.example"))

            await eventually(acknowledged, 60, "the acknowledgement of the queued mail")
            # An agent comes (presence writes the agent and publishes the record): the router drains the queue.
            await put_agent(redis, keys, "shop-a", "agent-1", ["presales"], email=5)
            await producer.send(
                producer.topics.presence,
                "shop-a/agent-1",
                presence_record("shop-a", "agent-1", "available", ["presales"]),
            )

            def assigned(conv: str) -> Callable[[], Awaitable[bool]]:
                async def check() -> bool:
                    return await redis.hget(keys.conversation("shop-a", conv), "state") == b"assigned"

                return check

            await eventually(assigned(first), 60, "the queued mail drained to the agent")
            # The next mail is assigned at once and needs no acknowledgement.
            served = customer_mail("zhao@customer.example", "这件外套有白色L码吗？", "咨询外套")
            conv = await conversation_of(settings, await send(service.smtp.port, served))
            await eventually(assigned(conv), 60, "the second mail assigned")
            await asyncio.sleep(1.5)
            [ack] = acks_to(relay, "wang@customer.example")
            assert ack["In-Reply-To"] == waiting["Message-ID"]
            assert re.search(r"预计约 \d+ (分钟|小时|天)内回复您", ack.get_payload(decode=True).decode())
            assert acks_to(relay, "zhao@customer.example") == []
    finally:
        await stop_router(router)
        await relay.stop()


async def test_a_replica_that_died_mid_send_or_a_relay_that_is_down_still_ends_in_one_acknowledgement(
    settings: ServiceSettings, redis: Redis
) -> None:
    keys = Keys(settings.key_prefix)
    relay = CapturingRelay()
    await relay.start()
    es = email_settings(settings, relay.port)
    try:
        async with running_email(es) as service:
            assert service.smtp.port is not None
            question = customer_mail("sun@customer.example", "发票抬头写错了，能重开吗？", "发票")
            conv = await conversation_of(settings, await send(service.smtp.port, question))
        await switch_on(redis, keys, "shop-a", email=True)
        await put_queued(redis, keys, "shop-a", conv, "after_sales", "email", ahead=1)
        sender = AckSender(es, ThreadBook(redis, keys, 3600), keys)
        # Another replica claimed it and died before sending: its lease must run out first.
        marker = keys.processed("shop-a", "email-acks", conv)
        await redis.set(marker, b"sending:email-dead", ex=1)
        with pytest.raises(TransientError):
            await sender.acknowledge("shop-a", conv)
        await asyncio.sleep(1.2)
        # The relay is down: nothing is taken, the claim is released for the retry.
        await relay.stop()
        with pytest.raises(TransientError):
            await sender.acknowledge("shop-a", conv)
        assert await redis.get(marker) is None
        await relay.start()
        assert await sender.acknowledge("shop-a", conv) == "sent"
        assert await sender.acknowledge("shop-a", conv) == "already_sent"
        assert [m["To"] for m in relay.messages] == ["sun@customer.example"]
    finally:
        await relay.stop()
