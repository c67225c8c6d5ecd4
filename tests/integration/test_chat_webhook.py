"""The platform webhook: HMAC checks, replay and size limits, idempotent redelivery, each refusal of an
authenticated request dead-lettered."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from switchboard.contracts import DeadLetter, InboundMessage, MessageKind
from switchboard.runtime.settings import ServiceSettings
from switchboard.runtime.topics import Topics
from tests.helpers import read_topic
from tests.integration.chat_service import chat_settings, running_chat, signed
from tests.redis_cluster import on_both_redis_backends

pytestmark = [pytest.mark.broker, on_both_redis_backends]

URL = "/chat/v1/webhook/shop-a"


def event(event_id: str, message_id: str, **fields: object) -> dict[str, object]:
    """A platform's webhook body."""
    return {"event_id": event_id, "message_id": message_id, "customer_id": "tb-buyer-1", **fields}


async def test_a_signed_message_is_taken_once_however_often_the_platform_redelivers_it(
    settings: ServiceSettings,
) -> None:
    topics = Topics(settings.topic_prefix)
    async with running_chat(chat_settings(settings)) as chat, httpx.AsyncClient(base_url=chat.base) as http:
        body = event(
            "evt-1",
            "tb-msg-1",
            kind="order_card",
            order_id="3301",
            order_status="WAIT_BUYER_CONFIRM_GOODS",
            refund_status="WAIT_SELLER_AGREE",
            dispute_stage="claim_open",
            category="apparel",
            text="退款怎么还没到？电话 139-1234-5678",
            display_name="淘宝用户",
            member_tier="88VIP",
            platform="taobao",
        )
        raw, headers = signed("shop-a", body, int(time.time()))
        first = await http.post(URL, content=raw, headers=headers)
        assert first.status_code == 200 and first.json()["status"] == "accepted"
        # The platform did not see our 200 and delivers the same message again, under a new event id.
        raw, headers = signed("shop-a", {**body, "event_id": "evt-2"}, int(time.time()))
        again = await http.post(URL, content=raw, headers=headers)
        assert again.status_code == 200 and again.json() == {**first.json(), "status": "duplicate"}
        raw, headers = signed("shop-a", event("evt-3", "tb-msg-2", text="还在吗"), int(time.time()))
        assert (await http.post(URL, content=raw, headers=headers)).json()["status"] == "accepted"
        records = await read_topic(settings.kafka_bootstrap, topics.inbound, 2)
    assert len(records) == 2
    message = records[0][1]
    assert isinstance(message, InboundMessage)
    assert message.message_id == first.json()["message_id"]
    assert message.conversation_id == first.json()["conversation_id"]
    assert message.kind == MessageKind.MESSAGE_KIND_ORDER_CARD
    # Signed by the platform: its tier, order status (Taobao's codes normalised), dispute stage and category hold.
    commerce = message.commerce
    assert (commerce.order_status, commerce.platform, commerce.dispute_stage) == ("refunding", "taobao", "claim_open")
    assert (commerce.category, commerce.facts_source, message.customer.tier_source) == ("apparel", "webhook", "webhook")
    assert message.text == "退款怎么还没到？电话 139****5678" and message.language == "zh"
    assert message.customer.member_tier == "88VIP" and message.chat.platform_event_id == "evt-1"
    second = records[1][1]
    assert isinstance(second, InboundMessage) and second.conversation_id == message.conversation_id


async def test_each_bad_request_gets_its_own_status_and_a_masked_dead_letter(
    settings: ServiceSettings,
) -> None:
    topics = Topics(settings.topic_prefix)
    cs = chat_settings(settings, chat_max_body_bytes=4096)
    now = int(time.time())
    good = event("evt-ok", "m-ok", text="hi, my number is 13812341234")
    async with running_chat(cs) as chat, httpx.AsyncClient(base_url=chat.base) as http:
        raw, headers = signed("shop-a", good, now)
        assert (await http.post(URL, content=raw, headers=headers)).status_code == 200
        cases: list[tuple[str, bytes, dict[str, str], int]] = []
        cases.append(("replayed event id", raw, headers, 409))
        forged = {**headers, "X-SB-Signature": "sha256=" + "0" * 64}
        cases.append(("forged signature", raw, forged, 401))
        cases.append(("no signature", raw, {"Content-Type": "application/json"}, 401))
        raw_b, headers_b = signed("shop-b", event("evt-b", "m-b", text="13812341234"), now)
        cases.append(("another shop's secret", raw_b, headers_b, 401))
        raw_old, headers_old = signed("shop-a", event("evt-old", "m-old", text="old"), now - 3600)
        cases.append(("stale timestamp", raw_old, headers_old, 401))
        raw_big, headers_big = signed("shop-a", event("evt-big", "m-big", text="x" * 5000), now)
        cases.append(("body over the limit", raw_big, headers_big, 413))
        raw_ct, headers_ct = signed("shop-a", event("evt-ct", "m-ct", text="hi"), now)
        cases.append(("form content type", raw_ct, {**headers_ct, "Content-Type": "text/plain"}, 415))
        raw_bad, headers_bad = signed("shop-a", b"{not json 13812341234", now)
        cases.append(("invalid JSON", raw_bad, headers_bad, 400))
        raw_f, headers_f = signed("shop-a", {"event_id": "evt-f", "message_id": "m-f", "text": "no customer"}, now)
        cases.append(("missing customer", raw_f, headers_f, 422))
        raw_k, headers_k = signed("shop-a", event("evt-k", "m-k", kind="image", image_url="ftp://x"), now)
        cases.append(("bad image url", raw_k, headers_k, 422))
        for what, body, hdrs, status in cases:
            response = await http.post(URL, content=body, headers=hdrs)
            assert response.status_code == status, what
            assert response.json()["reason"], what
        # Not authenticated (bad signature, or too large to be read and checked): refused with no DLQ record.
        recorded = [case for case in cases if case[3] not in (401, 413)]
        letters = await read_topic(settings.kafka_bootstrap, topics.dlq, len(recorded))
        inbound = await read_topic(settings.kafka_bootstrap, topics.inbound, 1)
    assert len(inbound) == 1
    assert len(letters) == len(recorded)
    types = sorted(letter.error_type for _, letter in letters if isinstance(letter, DeadLetter))
    assert types == sorted(["replayed", "unsupported_media_type", "invalid_json", "invalid_field", "invalid"])
    for _, letter in letters:
        assert isinstance(letter, DeadLetter) and letter.source == "http:" + URL
        assert b"13812341234" not in letter.original
    assert any(b"138****1234" in letter.original for _, letter in letters if isinstance(letter, DeadLetter))


async def test_an_unknown_shop_is_refused(settings: ServiceSettings) -> None:
    async with running_chat(chat_settings(settings)) as chat, httpx.AsyncClient(base_url=chat.base) as http:
        raw, headers = signed("shop-a", event("e", "m", text="hi"), int(time.time()))
        response = await http.post("/chat/v1/webhook/shop-zzz", content=raw, headers=headers)
    assert response.status_code == 401
    assert json.loads(response.text)["error"] == "bad_signature"
