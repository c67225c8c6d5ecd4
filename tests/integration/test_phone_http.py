"""The phone adapter over HTTP: batches of call events and segments, post-call transcripts, refusals."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from switchboard.contracts import CallEvent, Channel, DeadLetter, InboundMessage, MessageKind
from switchboard.phone.records import conversation_id
from switchboard.runtime.settings import ServiceSettings
from switchboard.runtime.topics import Topics
from tests.helpers import eventually, read_topic
from tests.integration.phone_service import (
    SHOP_A_KEY,
    SHOP_B_HOTLINE,
    SHOP_B_KEY,
    running_phone,
    segment,
    started,
)
from tests.redis_cluster import on_both_redis_backends

pytestmark = [pytest.mark.broker, on_both_redis_backends]

EVENTS = "/v1/phone/events"


def _inbound(records: list[tuple[str, object]]) -> list[InboundMessage]:
    messages = [m for _, m in records]
    assert all(isinstance(m, InboundMessage) for m in messages)
    return messages  # type: ignore[return-value]


async def test_a_call_becomes_one_conversation_with_its_final_segments_in_order(settings: ServiceSettings) -> None:
    topics = Topics(settings.topic_prefix)
    async with running_phone(settings) as phone, httpx.AsyncClient(base_url=phone.http, headers=SHOP_A_KEY) as http:
        first = await http.post(
            EVENTS,
            json={
                "id": "b1",
                "items": [
                    started("call-1", ivr_choice="2", language="zh-CN"),
                    segment("call-1", 2, "我的订单 还没到，电话 13812345678，邮箱 zhang.san@example.com", final=True),
                    segment("call-1", 3, "身份证 110101199003071234", speaker="客户"),
                    segment("call-1", 1, "你好", final=False),
                    segment("call-1", 1, "你好，我想查一下订单"),
                ],
            },
        )
        assert first.status_code == 200, first.text
        statuses = {r["ref"]: r["status"] for r in first.json()["results"]}
        assert statuses == {
            "call-1:call.started": "accepted",
            "call-1:partial:1": "no_owner",
            "call-1:seg:1": "accepted",
            "call-1:seg:2": "accepted",
            "call-1:seg:3": "accepted",
        }
        second = await http.post(
            EVENTS, json=[{"type": "call.answered", "call_id": "call-1"}, {"type": "call.ended", "call_id": "call-1"}]
        )
        assert second.status_code == 200
    records = await read_topic(settings.kafka_bootstrap, topics.inbound, 6)
    keys = {key for key, _ in records}
    messages = _inbound(records)
    assert keys == {conversation_id("shop-a", "call-1")}, "one call, one conversation key"
    start = messages[0]
    assert start.kind == MessageKind.MESSAGE_KIND_CALL_EVENT
    assert start.phone.event == CallEvent.CALL_EVENT_STARTED
    assert start.channel == Channel.CHANNEL_PHONE
    assert start.tenant_id == "shop-a"
    assert start.attributes["priority"] == "phone"
    assert start.attributes["capacity"] == "phone_slot"
    assert start.phone.caller_masked == "138****5678"
    assert start.customer.contact_masked == "138****5678"
    assert start.phone.ivr_choice == "2"
    assert start.language == "zh"
    finals = [m for m in messages if m.kind == MessageKind.MESSAGE_KIND_TRANSCRIPT]
    assert [m.phone.segment_seq for m in finals] == [1, 2, 3], "finals in seq order though sent 2 before 1"
    assert all(m.phone.is_final for m in finals), "partials never on the inbound topic"
    assert finals[1].text == "我的订单 还没到，电话 138****5678，邮箱 z***@example.com"
    assert finals[2].text == "身份证 110101********1234"
    assert finals[2].phone.speaker == "customer"
    assert finals[1].language == "zh"
    assert finals[0].phone.speaker == "customer"
    assert [m.phone.event for m in messages[4:]] == [CallEvent.CALL_EVENT_ANSWERED, CallEvent.CALL_EVENT_ENDED]
    for message in messages:
        assert "13812345678" not in message.SerializeToString().decode("utf-8", "replace")


async def test_resent_batches_and_segments_yield_one_record_each(settings: ServiceSettings) -> None:
    topics = Topics(settings.topic_prefix)
    batch = {"items": [started("call-2"), segment("call-2", 1, "hello"), segment("call-2", 2, "where is my parcel")]}
    async with running_phone(settings) as phone, httpx.AsyncClient(base_url=phone.http, headers=SHOP_A_KEY) as http:
        assert (await http.post(EVENTS, json=batch)).status_code == 200
        again = await http.post(EVENTS, json=batch)
        assert again.status_code == 200
        assert {r["status"] for r in again.json()["results"]} == {"duplicate"}
        twice = await http.post(EVENTS, json=[segment("call-2", 3, "thanks"), segment("call-2", 3, "thanks")])
        assert [r["status"] for r in twice.json()["results"]] == ["accepted", "duplicate"]
        # A sentinel call written last: everything before it on the topic is all there is.
        await http.post(EVENTS, json=[started("call-2b")])
    records = await read_topic(settings.kafka_bootstrap, topics.inbound, 5)
    messages = _inbound(records)
    assert [m.provider_message_id for m in messages if m.phone.call_id == "call-2"] == [
        "call-2:call.started",
        "call-2:seg:1",
        "call-2:seg:2",
        "call-2:seg:3",
    ]
    assert len({m.message_id for m in messages}) == 5


async def test_segments_sent_out_of_order_in_separate_requests_become_messages_in_seq_order(
    settings: ServiceSettings,
) -> None:
    topics = Topics(settings.topic_prefix)
    async with running_phone(settings) as phone, httpx.AsyncClient(base_url=phone.http, headers=SHOP_A_KEY) as http:
        assert (await http.post(EVENTS, json=[started("call-3")])).status_code == 200
        # 3 and 2 arrive first and wait for 1 (within the reorder window); all three are acked after Kafka acked.
        late = [asyncio.create_task(http.post(EVENTS, json=[segment("call-3", n, f"part {n}")])) for n in (3, 2)]

        async def both_waiting() -> bool:
            return phone.adapter.sequencer.waiting("shop-a", "call-3") == 2

        await eventually(both_waiting, 10, "segments 3 and 2 waiting for 1")
        first = await http.post(EVENTS, json=[segment("call-3", 1, "part 1")])
        answers = [first, *await asyncio.gather(*late)]
        assert [a.status_code for a in answers] == [200, 200, 200]
    records = await read_topic(settings.kafka_bootstrap, topics.inbound, 4)
    finals = [m for m in _inbound(records) if m.kind == MessageKind.MESSAGE_KIND_TRANSCRIPT]
    assert [m.text for m in finals] == ["part 1", "part 2", "part 3"]
    assert not any("out_of_order" in m.attributes for m in finals)


async def test_a_segment_missing_past_the_reorder_window_is_skipped_and_written_late_marked(
    settings: ServiceSettings,
) -> None:
    topics = Topics(settings.topic_prefix)
    async with (
        running_phone(settings, phone_reorder_window_s=0.3) as phone,
        httpx.AsyncClient(base_url=phone.http, headers=SHOP_A_KEY) as http,
    ):
        assert (await http.post(EVENTS, json=[started("call-8")])).status_code == 200
        assert (await http.post(EVENTS, json=[segment("call-8", 2, "two")])).status_code == 200
        assert (await http.post(EVENTS, json=[segment("call-8", 3, "three")])).status_code == 200
        assert (await http.post(EVENTS, json=[segment("call-8", 1, "one")])).status_code == 200
    records = await read_topic(settings.kafka_bootstrap, topics.inbound, 4)
    finals = [m for m in _inbound(records) if m.kind == MessageKind.MESSAGE_KIND_TRANSCRIPT]
    assert [m.text for m in finals] == ["two", "three", "one"], "nothing lost, the late one comes last"
    assert [m.attributes.get("out_of_order") for m in finals] == [None, None, "true"]


async def test_post_call_webvtt_and_json_transcripts_become_messages_in_start_order(
    settings: ServiceSettings,
) -> None:
    topics = Topics(settings.topic_prefix)
    vtt = (
        "WEBVTT - call-4\n\nNOTE recorded by the CTI\n\n"
        "2\n00:00:04.000 --> 00:00:06.500\n<v Agent>您好，请问订单号是多少？</v>\n\n"
        "1\n00:00:00.500 --> 00:00:03.000 align:start\n<v Customer>你好，我要退货，手机 139 8765 4321</v>\n\n"
        "00:07.000 --> 00:09.000\n<v Customer>订单 202311110000123456789 &amp; 发票</v>\n"
    )
    document = {
        "call_id": "call-5",
        "segments": [
            {"speaker": "customer", "text": "second", "start_ms": 2000, "end_ms": 2500},
            {"speaker": "agent", "text": "first", "start_ms": 100, "end_ms": 900, "confidence": 0.8},
        ],
    }
    async with running_phone(settings) as phone, httpx.AsyncClient(base_url=phone.http, headers=SHOP_A_KEY) as http:
        assert (await http.post(EVENTS, json=[started("call-4"), started("call-5")])).status_code == 200
        answer = await http.post(
            "/v1/phone/calls/call-4/transcript", content=vtt.encode(), headers={"Content-Type": "text/vtt"}
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["accepted"] == 3
        again = await http.post(
            "/v1/phone/calls/call-4/transcript", content=vtt.encode(), headers={"Content-Type": "text/vtt"}
        )
        assert again.json() == {"call_id": "call-4", "segments": 3, "accepted": 0, "duplicate": 3}
        answer = await http.post("/v1/phone/calls/call-5/transcript", json=document)
        assert answer.status_code == 200, answer.text
    records = await read_topic(settings.kafka_bootstrap, topics.inbound, 7)
    messages = _inbound(records)
    call4 = [m for m in messages if m.phone.call_id == "call-4" and m.kind == MessageKind.MESSAGE_KIND_TRANSCRIPT]
    assert [m.text for m in call4] == [
        "你好，我要退货，手机 139****4321",
        "您好，请问订单号是多少？",
        "订单 202311110000123456789 & 发票",
    ]
    assert [m.phone.speaker for m in call4] == ["customer", "agent", "customer"]
    assert [(m.phone.start_ms, m.phone.end_ms) for m in call4] == [(500, 3000), (4000, 6500), (7000, 9000)]
    assert all(m.attributes["source"] == "post_call" for m in call4)
    call5 = [m for m in messages if m.phone.call_id == "call-5" and m.kind == MessageKind.MESSAGE_KIND_TRANSCRIPT]
    assert [m.text for m in call5] == ["first", "second"]
    assert call5[0].language == "en"


# (path, body, content type, status, error type): each refused with a reason and dead-lettered, masked.
REFUSALS: list[tuple[str, bytes, str, int, str]] = [
    (EVENTS, b'{"items": [', "application/json", 400, "bad_json"),
    (
        EVENTS,
        b'[{"type": "segment", "call_id": "nope", "seq": 1, "text": "x", "start_ms": 0, "end_ms": 5}]',
        "application/json",
        404,
        "unknown_call",
    ),
    (
        EVENTS,
        b'[{"type": "call.started", "call_id": "c", "caller": "13812345678", "dialled_number": "1"}, '
        b'{"type": "segment", "call_id": "c", "seq": 1, "text": "x", "start_ms": 50, "end_ms": 5}]',
        "application/json",
        422,
        "invalid",
    ),
    (
        EVENTS,
        b'{"type": "call.started", "call_id": "c", "caller": "13812345678", "dialled_number": "400"}',
        "text/plain",
        415,
        "unsupported_media_type",
    ),
    (
        EVENTS,
        b'{"type": "call.started", "call_id": "c", "caller": "021-61234567", "dialled_number": "'
        + SHOP_B_HOTLINE.encode()
        + b'"}',
        "application/json",
        403,
        "wrong_tenant",
    ),
    (EVENTS, b'{"items": [' + b'"x",' * 70_000 + b'"x"]}', "application/json", 413, "too_large"),
    (
        "/v1/phone/calls/call-6/transcript",
        b"00:00.000 --> 00:01.000\nhello 13812345678",
        "text/vtt",
        422,
        "bad_webvtt",
    ),
    (
        "/v1/phone/calls/call-6/transcript",
        b"WEBVTT\n\n00:00:02.000 --> 00:00:01.000\nbackwards",
        "text/vtt",
        422,
        "bad_webvtt",
    ),
    (
        "/v1/phone/calls/call-6/transcript",
        b"WEBVTT\n\n1\n00:00:xx --> 00:00:01.000\nbad",
        "text/vtt",
        422,
        "bad_webvtt",
    ),
]


async def test_invalid_input_gets_a_clear_4xx_and_a_masked_dlq_record(settings: ServiceSettings) -> None:
    answers = []
    async with running_phone(settings) as phone, httpx.AsyncClient(base_url=phone.http, headers=SHOP_A_KEY) as http:
        assert (await http.post(EVENTS, json=[started("call-6")])).status_code == 200
        for path, body, content_type, status, error_type in REFUSALS:
            answer = await http.post(path, content=body, headers={"Content-Type": content_type})
            assert answer.status_code == status, (error_type, answer.text)
            assert answer.json()["error"] == error_type
            assert answer.json()["reason"]
            answers.append(answer.json())
        assert (await http.get("/healthz")).status_code == 200, "the adapter lives on"
    letters = await read_topic(settings.kafka_bootstrap, Topics(settings.topic_prefix).dlq, len(REFUSALS))
    assert sorted(letter.error_type for _, letter in letters) == sorted(t for *_, t in REFUSALS)  # type: ignore[attr-defined]
    reasons = {letter.reason for _, letter in letters}  # type: ignore[attr-defined]
    assert all(answer["reason"] in reasons for answer in answers), "each refusal's reason is in its DLQ record"
    for _, letter in letters:
        assert isinstance(letter, DeadLetter)
        assert letter.tenant_id == "shop-a"
        assert b"13812345678" not in letter.original
        assert b"61234567" not in letter.original, "landline callers are masked too"


async def test_unknown_api_key_is_refused_and_tenants_do_not_see_each_others_calls(settings: ServiceSettings) -> None:
    async with running_phone(settings) as phone, httpx.AsyncClient(base_url=phone.http) as http:
        answer = await http.post(EVENTS, json=[started("call-7")], headers={"X-Api-Key": "guess"})
        assert answer.status_code == 401
        assert (await http.post(EVENTS, json=[started("call-7")], headers=SHOP_A_KEY)).status_code == 200
        # Shop B cannot add to shop A's call: for shop B it does not exist.
        answer = await http.post(EVENTS, json=[segment("call-7", 1, "hi")], headers=SHOP_B_KEY)
        assert answer.status_code == 404
        assert (
            await http.post(EVENTS, json=[started("call-7", SHOP_B_HOTLINE)], headers=SHOP_B_KEY)
        ).status_code == 200
    records = await read_topic(settings.kafka_bootstrap, Topics(settings.topic_prefix).inbound, 2)
    by_tenant = {m.tenant_id: key for key, m in records}  # type: ignore[attr-defined]
    assert by_tenant["shop-a"] != by_tenant["shop-b"], "the same call id at two shops is two conversations"


async def test_redis_unreachable_means_retry_later_not_a_crash(settings: ServiceSettings) -> None:
    async with (
        running_phone(settings, redis_url="redis://127.0.0.1:1/0") as phone,
        httpx.AsyncClient(base_url=phone.http, headers=SHOP_A_KEY) as http,
    ):
        answer = await http.post(EVENTS, json=[started("call-9")])
        assert answer.status_code == 503
        assert answer.headers["Retry-After"] == "1"
        assert answer.json()["error"] == "retry_later"
        assert (await http.get("/healthz")).status_code == 200


async def test_without_its_directory_the_service_is_up_but_not_ready(settings: ServiceSettings, tmp_path: Path) -> None:
    async with (
        running_phone(settings, phone_directory=tmp_path / "missing.yaml") as phone,
        httpx.AsyncClient(base_url=phone.http, headers=SHOP_A_KEY) as http,
    ):
        ready = await http.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["phone_directory"] is False
        assert (await http.post(EVENTS, json=[started("call-10")])).status_code == 401


async def test_a_huge_malformed_transcript_is_refused_and_dead_lettered_cut_to_size(settings: ServiceSettings) -> None:
    body = b"NOT A VTT 13812345678\n" + b"x" * 1_500_000
    async with running_phone(settings) as phone, httpx.AsyncClient(base_url=phone.http, headers=SHOP_A_KEY) as http:
        assert (await http.post(EVENTS, json=[started("call-11")])).status_code == 200
        answer = await http.post(
            "/v1/phone/calls/call-11/transcript", content=body, headers={"Content-Type": "text/vtt"}
        )
        assert answer.status_code == 422, answer.text
    [(_, letter)] = await read_topic(settings.kafka_bootstrap, Topics(settings.topic_prefix).dlq, 1)
    assert isinstance(letter, DeadLetter)
    assert letter.error_type == "bad_webvtt"
    assert 0 < len(letter.original) <= 128 * 1024
    assert letter.original.startswith(b"NOT A VTT 138****5678")
    assert "first 131072 of" in letter.reason
