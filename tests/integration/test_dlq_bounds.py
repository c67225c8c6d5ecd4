"""The DLQ cannot be filled from outside: unauthenticated requests leave no record, each sender has a budget, and an
original over the size limit is cut (docs/dlq.md, "Bounds")."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import REGISTRY
from redis.asyncio import Redis
from websockets.exceptions import ConnectionClosed

from switchboard.contracts import TYPE_HEADER, DeadLetter, decode
from switchboard.gateway.protocol import CloseCode
from switchboard.runtime.kafka import DLQ_CUT_HEADER, RecordProducer
from switchboard.runtime.settings import ServiceSettings
from switchboard.runtime.topics import Topics
from tests.conftest import TEST_PARTITIONS
from tests.integration.chat_service import chat_settings, connect, next_frame, running_chat, send_message, signed
from tests.integration.gateway_support import Desk, gateway_settings, roster_loaded, running_gateway, token

pytestmark = pytest.mark.broker


async def dlq_records(settings: ServiceSettings) -> list[tuple[DeadLetter, dict[str, bytes]]]:
    """Every DeadLetter on the test's DLQ topic up to its end now, with the record's headers."""
    topic = Topics(settings.topic_prefix).dlq
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False, group_id=None)
    await consumer.start()
    found: list[tuple[DeadLetter, dict[str, bytes]]] = []
    try:
        partitions = [TopicPartition(topic, p) for p in range(TEST_PARTITIONS)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        async with asyncio.timeout(30):
            for tp in partitions:
                while await consumer.position(tp) < ends[tp]:
                    for r in (await consumer.getmany(tp, timeout_ms=500)).get(tp, []):
                        headers = dict(r.headers)
                        letter = decode(headers[TYPE_HEADER].decode(), r.value)
                        assert isinstance(letter, DeadLetter)
                        found.append((letter, headers))
    finally:
        await consumer.stop()
    return found


def _dropped(reason: str) -> float:
    return REGISTRY.get_sample_value("sb_dlq_dropped_total", {"service": "chat", "reason": reason}) or 0.0


async def test_unsigned_webhook_posts_are_refused_without_a_dead_letter(settings: ServiceSettings) -> None:
    body = {"event_id": "e", "message_id": "m", "customer_id": "c", "text": "x" * 50_000}
    raw, good = signed("shop-a", body, int(time.time()))
    unsigned = {"Content-Type": "application/json"}
    forged = {**good, "X-SB-Signature": "sha256=" + "0" * 64}
    async with running_chat(chat_settings(settings)) as chat, httpx.AsyncClient(base_url=chat.base) as http:
        statuses: list[int] = []
        for i in range(500):
            # The flood of the report (an unknown shop, unsigned), and the same at a real shop, forged or stale.
            url, headers = [
                ("/chat/v1/webhook/shop-zzz", unsigned),
                ("/chat/v1/webhook/shop-a", unsigned),
                ("/chat/v1/webhook/shop-a", forged),
                ("/chat/v1/webhook/shop-a", {**good, "X-SB-Timestamp": "1"}),
            ][i % 4]
            statuses.append((await http.post(url, content=raw, headers=headers)).status_code)
        # A signed request is authenticated: its refusal (bad JSON) is recorded.
        bad, bad_headers = signed("shop-a", b"{not json", int(time.time()))
        assert (await http.post("/chat/v1/webhook/shop-a", content=bad, headers=bad_headers)).status_code == 400
    assert set(statuses) == {401}
    letters = await dlq_records(settings)
    assert [(letter.error_type, letter.tenant_id) for letter, _ in letters] == [("invalid_json", "shop-a")]


async def test_a_tenant_over_its_dlq_budget_is_answered_but_not_recorded(settings: ServiceSettings) -> None:
    cs = chat_settings(settings, dlq_burst=5, dlq_rate_per_s=0.001)
    dropped = _dropped("invalid_json")
    async with running_chat(cs) as chat, httpx.AsyncClient(base_url=chat.base) as http:
        for shop, count in (("shop-a", 20), ("shop-b", 3)):
            for i in range(count):
                bad, headers = signed(shop, f"{{not json {i}".encode(), int(time.time()))
                answer = await http.post(f"/chat/v1/webhook/{shop}", content=bad, headers=headers)
                assert answer.status_code == 400 and answer.json()["error"] == "invalid_json"
    letters = await dlq_records(settings)
    by_tenant = sorted(letter.tenant_id for letter, _ in letters)
    # shop-a's flood spent its own budget, not shop-b's.
    assert by_tenant == ["shop-a"] * 5 + ["shop-b"] * 3
    assert _dropped("invalid_json") - dropped == 15


async def test_an_original_over_the_limit_is_cut_and_says_so(settings: ServiceSettings) -> None:
    producer = RecordProducer(settings.model_copy(update={"dlq_max_payload_bytes": 4096}))
    await producer.start()
    try:
        await producer.dead_letter(
            source="http:/x", reason="too big", error_type="too_large", original=b"a" * 10_000, tenant_id="shop-a"
        )
        await producer.dead_letter(source="http:/x", reason="small", error_type="invalid", original=b"b" * 100)
    finally:
        await producer.stop()
    letters = sorted(await dlq_records(settings), key=lambda found: found[0].error_type)
    (small, small_headers), (cut, cut_headers) = letters
    assert cut.original == b"a" * 4096 and cut_headers[DLQ_CUT_HEADER] == b"10000"
    assert "keeps the first 4096 of 10000 bytes" in cut.reason
    assert small.original == b"b" * 100 and DLQ_CUT_HEADER not in small_headers


async def test_a_sender_over_its_hourly_bytes_is_not_recorded_and_others_still_are(settings: ServiceSettings) -> None:
    """The byte budget bounds what one sender's refusals can take of the DLQ (64 KiB an hour here, the least)."""
    producer = RecordProducer(settings.model_copy(update={"dlq_bytes_per_hour": 64 * 1024}))
    await producer.start()
    dropped = REGISTRY.get_sample_value("sb_dlq_dropped_total", {"service": settings.service_name, "reason": "big"})
    try:
        written = [
            await producer.dead_letter(
                source="http:/x", reason="r", error_type="big", original=b"x" * size, tenant_id=tenant
            )
            for tenant, size in (("shop-a", 60_000), ("shop-a", 10_000), ("shop-b", 60_000), ("shop-a", 5_000))
        ]
    finally:
        await producer.stop()
    assert [letter is not None for letter in written] == [True, False, True, True]
    assert sorted((letter.tenant_id, len(letter.original)) for letter, _ in await dlq_records(settings)) == [
        ("shop-a", 5_000),
        ("shop-a", 60_000),
        ("shop-b", 60_000),
    ]
    after = REGISTRY.get_sample_value("sb_dlq_dropped_total", {"service": settings.service_name, "reason": "big"})
    assert (after or 0.0) - (dropped or 0.0) == 1


async def test_a_widget_socket_that_keeps_sending_garbage_is_limited_like_messages_and_closed(
    settings: ServiceSettings,
) -> None:
    cs = chat_settings(settings, chat_conn_rate_per_s=0.01, chat_conn_burst=3, chat_rate_strikes_to_close=6)
    async with running_chat(cs) as chat, connect(chat.ws_url("shop-a", "garbage")) as ws:
        await next_frame(ws, "hello")
        codes: list[str] = []
        with contextlib.suppress(ConnectionClosed):
            for i in range(50):
                await ws.send(json.dumps({"type": "junk", "n": i}))
            async for raw in ws:
                frame = json.loads(raw)
                codes.append(frame.get("code", frame["type"]))
    # Three frames within the socket's bucket are refused (and recorded), the rest spend no Kafka write: limited,
    # and the sixth strike in a row closes the socket.
    assert codes == ["invalid"] * 3 + ["rate_limited"] * 3
    assert ws.close_code == 1008
    letters = await dlq_records(settings)
    assert [letter.error_type for letter, _ in letters] == ["invalid_field"] * 3


async def test_a_limited_message_is_answered_with_its_client_msg_id(settings: ServiceSettings) -> None:
    cs = chat_settings(settings, chat_conn_rate_per_s=0.01, chat_conn_burst=1)
    async with running_chat(cs) as chat, connect(chat.ws_url("shop-a", "quick")) as ws:
        await next_frame(ws, "hello")
        await send_message(ws, "q1", text="first")
        await send_message(ws, "q2", text="second")
        assert (await next_frame(ws, "ack"))["client_msg_id"] == "q1"
        limited = await next_frame(ws, "error")
    assert (limited["code"], limited["client_msg_id"]) == ("rate_limited", "q2")


async def test_a_desk_that_keeps_sending_invalid_frames_is_closed_like_a_flood(
    settings: ServiceSettings, redis: Redis
) -> None:
    gs = gateway_settings(settings, command_rate=0.01, command_burst=3)
    await roster_loaded(gs, redis)
    async with running_gateway(gs) as gw:
        desk = await Desk.open(gw.url, token("shop-a", "a-lina"))
        for i in range(20):
            with contextlib.suppress(ConnectionClosed):
                await desk.send({"type": "no-such-command", "id": f"x{i}"})
        assert await desk.close_code() == CloseCode.RATE_LIMITED
