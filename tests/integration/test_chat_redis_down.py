"""Redis stops and comes back: the chat adapter answers "retry later", never crashes, and serves again after.

This test runs its own Redis (the shared one is never stopped); Kafka is the shared broker.
"""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from switchboard.contracts import Channel, OutboundMessage
from switchboard.runtime.kafka import RecordProducer
from switchboard.runtime.settings import ServiceSettings
from switchboard.runtime.topics import Topics
from switchboard_tools.stack.redis import LocalRedis
from tests.integration.chat_service import chat_settings, connect, next_frame, running_chat, send_message, signed

pytestmark = pytest.mark.broker


async def _answer(ws: ClientConnection, client_msg_id: str) -> dict[str, object]:
    async with asyncio.timeout(20):
        while True:
            frame: dict[str, object] = json.loads(await ws.recv())
            if frame["type"] in ("ack", "error") and frame.get("client_msg_id") == client_msg_id:
                return frame


async def test_redis_stopped_and_restarted_retry_later_then_served_again(
    own_redis: LocalRedis, settings: ServiceSettings
) -> None:
    topics = Topics(settings.topic_prefix)
    cs = chat_settings(settings.model_copy(update={"redis_url": own_redis.url}), chat_retry_after_s=1)
    producer = RecordProducer(settings)
    await producer.start()
    try:
        async with (
            running_chat(cs) as chat,
            connect(chat.ws_url("shop-a", "r-1")) as ws,
            httpx.AsyncClient(base_url=chat.base) as http,
        ):
            conv = (await next_frame(ws, "hello"))["conversation_id"]
            await send_message(ws, "1", text="first")
            assert (await _answer(ws, "1"))["type"] == "ack"

            await asyncio.to_thread(own_redis.stop)
            await send_message(ws, "2", text="while Redis is down")
            answer = await _answer(ws, "2")
            assert (answer["type"], answer["code"]) == ("error", "retry_later")
            raw, headers = signed("shop-a", {"event_id": "e", "message_id": "m", "customer_id": "c", "text": "x"}, 0)
            raw, headers = signed("shop-a", json.loads(raw), int(time.time()))
            response = await http.post("/chat/v1/webhook/shop-a", content=raw, headers=headers)
            assert response.status_code == 503 and response.headers["Retry-After"] == "1"
            async with connect(chat.ws_url("shop-a", "r-2")) as refused:
                with pytest.raises(ConnectionClosed):
                    await refused.recv()
                assert refused.close_code == 1013
            assert (await http.get("/healthz")).status_code == 200

            await asyncio.to_thread(own_redis.start)
            for _ in range(40):
                await send_message(ws, "2", text="while Redis is down")
                if (await _answer(ws, "2"))["type"] == "ack":
                    break
                await asyncio.sleep(0.5)
            else:
                raise AssertionError("not accepted after Redis came back")
            # The socket opened before the outage still gets replies (its subscription was renewed).
            reply = OutboundMessage(
                message_id="r-after",
                tenant_id="shop-a",
                conversation_id=conv,
                channel=Channel.CHANNEL_CHAT,
                customer_id="r-1",
                text="we are back",
            )
            await producer.send(topics.outbound, conv, reply)
            assert (await next_frame(ws, "reply", timeout=30))["text"] == "we are back"
    finally:
        await producer.stop()
