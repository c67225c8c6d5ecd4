"""Kafka stops and comes back: the chat adapter says "retry later" meanwhile, and nothing acknowledged is lost.

This test runs its own broker (the shared one is never stopped) and the chat adapter in-process against it.
"""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from prometheus_client import REGISTRY
from websockets.asyncio.client import ClientConnection

from switchboard.contracts import InboundMessage
from switchboard.runtime.kafka import ensure_topics
from switchboard.runtime.settings import ServiceSettings
from switchboard.runtime.topics import Topics
from switchboard_tools.stack.kafka import LocalKafka
from tests.conftest import TEST_PARTITIONS
from tests.helpers import read_topic
from tests.integration.chat_service import chat_settings, connect, next_frame, running_chat, send_message, signed

pytestmark = pytest.mark.broker


def _inbound(outcome: str) -> float:
    labels = {"channel": "chat", "tenant": "shop-a", "outcome": outcome}
    return REGISTRY.get_sample_value("sb_inbound_messages_total", labels) or 0.0


async def _answer(ws: ClientConnection, client_msg_id: str, timeout: float = 15.0) -> dict[str, object]:
    async with asyncio.timeout(timeout):
        while True:
            frame: dict[str, object] = json.loads(await ws.recv())
            if frame["type"] in ("ack", "error") and frame.get("client_msg_id") == client_msg_id:
                return frame


async def _send_until_acked(ws: ClientConnection, client_msg_id: str, text: str, deadline_s: float = 60) -> str:
    """What a widget does with a message answered "retry later": keep it and send it again."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        await send_message(ws, client_msg_id, text=text)
        answer = await _answer(ws, client_msg_id)
        if answer["type"] == "ack":
            return str(answer["message_id"])
        assert answer["code"] == "retry_later"
        await asyncio.sleep(float(str(answer.get("retry_after_s", 1))) / 4)
    raise AssertionError(f"{client_msg_id} never acked")


async def test_broker_stopped_and_restarted_retry_later_and_nothing_acknowledged_is_lost(
    own_kafka: LocalKafka, settings: ServiceSettings
) -> None:
    await ensure_topics(own_kafka.bootstrap, Topics(settings.topic_prefix).specs(TEST_PARTITIONS))
    base = settings.model_copy(update={"kafka_bootstrap": own_kafka.bootstrap})
    cs = chat_settings(base, produce_timeout_s=1.5, chat_retry_after_s=1)
    acked: set[str] = set()
    async with (
        running_chat(cs) as chat,
        connect(chat.ws_url("shop-a", "patient")) as ws,
        httpx.AsyncClient(base_url=chat.base) as http,
    ):
        await next_frame(ws, "hello")
        for i in range(5):
            acked.add(await _send_until_acked(ws, f"before-{i}", f"before {i}"))

        await asyncio.to_thread(own_kafka.stop)
        retried = _inbound("retry_later")
        await send_message(ws, "during", text="sent while Kafka is down")
        refused = await _answer(ws, "during")
        assert (refused["type"], refused["code"]) == ("error", "retry_later")
        body = {"event_id": "evt-down", "message_id": "p-down", "customer_id": "tb-1", "text": "platform, down"}
        raw, headers = signed("shop-a", body, int(time.time()))
        response = await http.post("/chat/v1/webhook/shop-a", content=raw, headers=headers)
        assert response.status_code == 503 and response.headers["Retry-After"] == "1"
        # Each answer "retry later" is counted once: the widget's and the webhook's.
        assert _inbound("retry_later") - retried == 2

        await asyncio.to_thread(own_kafka.start)
        acked.add(await _send_until_acked(ws, "during", "sent while Kafka is down"))
        # The platform retries the very same request (same event id): it was not taken, so it is no replay.
        for _ in range(60):
            response = await http.post("/chat/v1/webhook/shop-a", content=raw, headers=headers)
            if response.status_code != 503:
                break
            await asyncio.sleep(0.5)
        assert response.status_code == 200, response.text
        acked.add(response.json()["message_id"])
        acked.add(await _send_until_acked(ws, "after", "after the restart"))

    records = await read_topic(own_kafka.bootstrap, Topics(settings.topic_prefix).inbound, len(acked), timeout=60)
    found = {m.message_id for _, m in records if isinstance(m, InboundMessage)}
    assert acked <= found, f"acknowledged but lost: {acked - found}"
    texts = [m.text for _, m in records if isinstance(m, InboundMessage) and m.customer.customer_id == "patient"]
    assert texts.index("after the restart") > texts.index("sent while Kafka is down") > texts.index("before 4")
