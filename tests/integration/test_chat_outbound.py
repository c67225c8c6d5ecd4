"""Agents' replies and routing decisions reach chat customers: socket on any replica, platform callback, queue."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Generator
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from websockets.exceptions import ConnectionClosed

from switchboard.contracts import Channel, DeadLetter, InboundMessage, OutboundMessage, RoutingEvent, RoutingEventType
from switchboard.runtime.kafka import RecordProducer
from switchboard.runtime.settings import ServiceSettings
from switchboard.runtime.signing import verify_body
from switchboard.runtime.topics import Topics
from switchboard.state.keys import Keys
from switchboard_tools.stack.procs import free_port
from tests.helpers import eventually, read_topic
from tests.integration.chat_service import SECRETS, chat_settings, connect, next_frame, running_chat
from tests.redis_cluster import on_both_redis_backends

pytestmark = [pytest.mark.broker, on_both_redis_backends]


class _QuietServer(uvicorn.Server):
    """A loopback receiver that leaves signal handling to the test process."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@contextlib.asynccontextmanager
async def platform_receiver() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A platform's callback endpoint on loopback that keeps what it got (when correctly signed)."""
    got: list[dict[str, Any]] = []

    async def callback(request: Request) -> Response:
        body = await request.body()
        failure = verify_body(
            SECRETS["shop-a"].encode(),
            request.headers.get("X-SB-Timestamp"),
            request.headers.get("X-SB-Signature"),
            body,
            time.time(),
            300,
        )
        if failure:
            return Response(failure, 401)
        if json.loads(body)["text"] == "refuse":
            return Response("no such conversation", 400)
        got.append(json.loads(body))
        return Response("ok")

    port = free_port()
    app = Starlette(routes=[Route("/im/callback", callback, methods=["POST"])])
    server = _QuietServer(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="off"))
    task = asyncio.create_task(server.serve())

    async def started() -> bool:
        return bool(server.started)

    await eventually(started, 10, "callback receiver")
    try:
        yield f"http://127.0.0.1:{port}/im/callback", got
    finally:
        server.should_exit = True
        await task


def reply(conversation_id: str, text: str, message_id: str, tenant: str = "shop-a") -> OutboundMessage:
    """An agent's reply as the gateway writes it."""
    return OutboundMessage(
        message_id=message_id,
        tenant_id=tenant,
        conversation_id=conversation_id,
        channel=Channel.CHANNEL_CHAT,
        agent_id="agent-7",
        text=text,
    )


def decision(conversation_id: str, kind: RoutingEventType.ValueType, position: int = 0) -> RoutingEvent:
    """A routing decision as the router writes it."""
    return RoutingEvent(
        event_id=f"ev-{conversation_id}-{kind}-{position}",
        tenant_id="shop-a",
        conversation_id=conversation_id,
        type=kind,
        channel=Channel.CHANNEL_CHAT,
        queue_position=position,
    )


async def test_the_waiting_customer_sees_the_queue_then_the_reply_then_the_close(
    settings: ServiceSettings, producer: RecordProducer
) -> None:
    topics = Topics(settings.topic_prefix)
    cs = chat_settings(settings, chat_seconds_per_queue_position=40)
    async with running_chat(cs) as chat:
        async with connect(chat.ws_url("shop-a", "waiting-1")) as ws:
            conv = (await next_frame(ws, "hello"))["conversation_id"]
            await producer.send(topics.routing, conv, decision(conv, RoutingEventType.ROUTING_EVENT_QUEUED, 3))
            assert await next_frame(ws, "queue") == {
                "type": "queue",
                "conversation_id": conv,
                "position": 3,
                "estimated_wait_s": 120,
            }
            await producer.send(topics.routing, conv, decision(conv, RoutingEventType.ROUTING_EVENT_QUEUED, 1))
            assert (await next_frame(ws, "queue"))["position"] == 1
            email = reply(conv, "not for chat", "r-email")
            email.channel = Channel.CHANNEL_EMAIL
            await producer.send_many(topics.outbound, [(conv, email), (conv, reply(conv, "您好，马上为您查询", "r-1"))])
            got = await next_frame(ws, "reply")
            assert (got["message_id"], got["text"], got["conversation_id"]) == ("r-1", "您好，马上为您查询", conv)
            # The same reply read twice (a consumer restart) reaches the customer once.
            await producer.send_many(topics.outbound, [(conv, reply(conv, "您好，马上为您查询", "r-1"))])
            await producer.send(topics.outbound, conv, reply(conv, "还有别的问题吗？", "r-2"))
            assert (await next_frame(ws, "reply"))["message_id"] == "r-2"
        async with connect(chat.ws_url("shop-a", "waiting-1")) as ws:
            assert (await next_frame(ws, "hello"))["conversation_id"] == conv, "stable until closed"
            await producer.send(topics.routing, conv, decision(conv, RoutingEventType.ROUTING_EVENT_CLOSED))
            assert (await next_frame(ws, "closed"))["conversation_id"] == conv
        async with connect(chat.ws_url("shop-a", "waiting-1")) as ws:
            assert (await next_frame(ws, "hello"))["conversation_id"] != conv, "a new conversation after the close"


async def test_without_an_open_socket_the_reply_goes_to_the_platform_callback_or_waits_for_the_next_connection(
    settings: ServiceSettings, producer: RecordProducer
) -> None:
    topics = Topics(settings.topic_prefix)
    async with platform_receiver() as (url, got):
        cs = chat_settings(settings, chat_tenant_callbacks={"shop-a": url})
        async with running_chat(cs) as chat:
            async with connect(chat.ws_url("shop-a", "gone-1")) as ws:
                conv_a = (await next_frame(ws, "hello"))["conversation_id"]
            async with connect(chat.ws_url("shop-b", "gone-2")) as ws:
                conv_b = (await next_frame(ws, "hello"))["conversation_id"]
            await producer.send(topics.outbound, conv_a, reply(conv_a, "已为您退款", "r-a"))
            await producer.send(topics.outbound, conv_a, reply(conv_a, "refuse", "r-refused"))
            for i in range(2):  # shop-b has no callback: its customer gets these when they come back
                await producer.send(topics.outbound, conv_b, reply(conv_b, f"hello {i}", f"r-b{i}", tenant="shop-b"))
            letters = await read_topic(settings.kafka_bootstrap, topics.dlq, 1)
            async with connect(chat.ws_url("shop-b", "gone-2")) as ws:
                assert (await next_frame(ws, "hello"))["conversation_id"] == conv_b
                kept = [await next_frame(ws, "reply") for _ in range(2)]
            async with connect(chat.ws_url("shop-b", "gone-2")) as ws:
                await next_frame(ws, "hello")
                await ws.send(json.dumps({"type": "ping"}))
                assert json.loads(await ws.recv())["type"] == "pong", "kept replies are sent once"
    assert [f["text"] for f in kept] == ["hello 0", "hello 1"]
    assert len(got) == 1
    assert got[0]["tenant_id"] == "shop-a" and got[0]["customer_id"] == "gone-1"
    assert (got[0]["type"], got[0]["text"], got[0]["conversation_id"]) == ("reply", "已为您退款", conv_a)
    letter = letters[0][1]
    assert isinstance(letter, DeadLetter) and letter.error_type == "undeliverable"
    assert letter.tenant_id == "shop-a" and "400" in letter.reason


async def test_a_reply_reaches_the_socket_whichever_replica_holds_it(
    settings: ServiceSettings, producer: RecordProducer
) -> None:
    topics = Topics(settings.topic_prefix)
    async with (
        running_chat(chat_settings(settings, instance_id="chat-1")) as one,
        running_chat(chat_settings(settings, instance_id="chat-2")) as two,
        contextlib.AsyncExitStack() as stack,
    ):
        sockets = []
        for i in range(6):
            replica = (one, two)[i % 2]
            ws = await stack.enter_async_context(connect(replica.ws_url("shop-a", f"multi-{i}")))
            sockets.append((ws, (await next_frame(ws, "hello"))["conversation_id"]))
        await producer.send_many(
            topics.outbound, [(conv, reply(conv, f"answer {i}", f"r-{i}")) for i, (_, conv) in enumerate(sockets)]
        )
        for i, (ws, _) in enumerate(sockets):
            assert (await next_frame(ws, "reply", timeout=30))["text"] == f"answer {i}"


async def test_a_customer_whose_id_is_their_phone_number_is_served_without_it_reaching_the_topic(
    settings: ServiceSettings, producer: RecordProducer
) -> None:
    topics = Topics(settings.topic_prefix)
    async with (
        running_chat(chat_settings(settings)) as chat,
        connect(chat.ws_url("shop-a", "13812341234")) as ws,
    ):
        conv = (await next_frame(ws, "hello"))["conversation_id"]
        await ws.send(json.dumps({"type": "message", "client_msg_id": "1", "text": "hi"}))
        await next_frame(ws, "ack")
        [(_, record)] = await read_topic(settings.kafka_bootstrap, topics.inbound, 1)
        assert isinstance(record, InboundMessage)
        assert record.customer.customer_id.startswith("h-")
        assert record.customer.contact_masked == "138****1234"
        assert b"13812341234" not in record.SerializeToString()
        # The gateway answers with the customer id it saw on the record.
        answer = reply(conv, "hello", "r-p")
        answer.customer_id = record.customer.customer_id
        await producer.send(topics.outbound, conv, answer)
        assert (await next_frame(ws, "reply"))["message_id"] == "r-p"


async def test_a_frame_over_the_transport_limit_closes_the_socket_without_being_buffered(
    settings: ServiceSettings,
) -> None:
    async with running_chat(chat_settings(settings)) as chat, connect(chat.ws_url("shop-a", "big")) as ws:
        await next_frame(ws, "hello")
        await ws.send(json.dumps({"type": "message", "client_msg_id": "1", "text": "x" * 300_000}))
        with pytest.raises(ConnectionClosed):
            await next_frame(ws, "ack")
        assert ws.close_code == 1009


async def test_the_waiting_customer_sees_their_place_move_up_as_the_queue_drains(
    settings: ServiceSettings,
    redis,  # type: ignore[no-untyped-def]
) -> None:
    keys = Keys(settings.key_prefix)
    cs = chat_settings(settings, chat_queue_refresh_s=0.1, chat_seconds_per_queue_position=20)
    async with running_chat(cs) as chat, connect(chat.ws_url("shop-a", "in-line")) as ws:
        conv = (await next_frame(ws, "hello"))["conversation_id"]
        # The router's state for a queued chat conversation with two ahead of it (see docs/state.md).
        queue = keys.queue_channel("shop-a", "presales", "chat")
        await redis.zadd(queue, {"ahead-1": 1, "ahead-2": 2, conv: 3})
        await redis.hset(
            keys.conversation("shop-a", conv), mapping={"state": "queued", "group": "presales", "channel": "chat"}
        )
        first = await next_frame(ws, "queue")
        assert (first["conversation_id"], first["position"], first["estimated_wait_s"]) == (conv, 3, 60)
        await redis.zrem(queue, "ahead-1")
        assert (await next_frame(ws, "queue"))["position"] == 2
        await redis.zrem(queue, "ahead-2")
        assert (await next_frame(ws, "queue"))["position"] == 1
        await redis.zrem(queue, conv)
        await redis.hset(keys.conversation("shop-a", conv), "state", "assigned")
        await ws.send(json.dumps({"type": "ping"}))
        assert json.loads(await ws.recv())["type"] == "pong", "no more queue frames once an agent has it"
