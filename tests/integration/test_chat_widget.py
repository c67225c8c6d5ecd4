"""The chat widget websocket against real Kafka and Redis: acks after the broker's ack, order, limits, refusals."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from websockets.exceptions import ConnectionClosed

from switchboard.chat.facts import encode_claims
from switchboard.chat.signing import widget_token
from switchboard.contracts import Channel, DeadLetter, InboundMessage, MessageKind
from switchboard.runtime.settings import ServiceSettings
from switchboard.runtime.topics import Topics
from tests.helpers import read_topic
from tests.integration.chat_service import SECRETS, chat_settings, connect, next_frame, running_chat, send_message
from tests.redis_cluster import on_both_redis_backends

pytestmark = [pytest.mark.broker, on_both_redis_backends]


async def test_every_message_kind_is_acked_once_on_the_topic_masked_and_with_its_language(
    settings: ServiceSettings,
) -> None:
    topics = Topics(settings.topic_prefix)
    async with running_chat(chat_settings(settings)) as chat, connect(chat.ws_url("shop-a", "buyer-1")) as ws:
        hello = await next_frame(ws, "hello")
        profile = {"display_name": "小王 13812341234", "member_tier": "88VIP"}
        await send_message(ws, "m1", kind="text", text="我的电话13812341234，什么时候发货？", **profile)
        await send_message(ws, "m2", kind="image", image_url="https://img.example.com/a.jpg")
        await send_message(ws, "m3", kind="product_card", sku="SKU-10086")
        await send_message(ws, "m4", kind="order_card", order_id="202311110001", order_status="shipped")
        await send_message(ws, "m5", kind="emoji", emoji="👍")
        await send_message(ws, "m6", kind="text", text="When will my order ship?")
        acks = [await next_frame(ws, "ack") for _ in range(6)]
        assert [a["client_msg_id"] for a in acks] == ["m1", "m2", "m3", "m4", "m5", "m6"]
        assert not any(a["duplicate"] for a in acks)
        assert {a["conversation_id"] for a in acks} == {hello["conversation_id"]}

        records = await read_topic(settings.kafka_bootstrap, topics.inbound, 6)
    assert len(records) == 6
    messages = [m for _, m in records]
    assert all(isinstance(m, InboundMessage) for m in messages)
    by_id = {m.message_id: m for m in messages if isinstance(m, InboundMessage)}
    first, image, product, order, emoji, english = (by_id[a["message_id"]] for a in acks)
    for key, m in records:
        assert isinstance(m, InboundMessage)
        assert key == m.conversation_id == hello["conversation_id"]
        assert (m.tenant_id, m.channel, m.customer.customer_id) == ("shop-a", Channel.CHANNEL_CHAT, "buyer-1")
    assert first.text == "我的电话138****1234，什么时候发货？"
    assert first.customer.display_name == "小王 138****1234"
    # A tier the browser claims is no fact: only the shop's signed claims or the platform's webhook give one.
    assert (first.customer.member_tier, first.customer.tier_source) == ("", "")
    assert (first.language, english.language) == ("zh", "en")
    assert image.kind == MessageKind.MESSAGE_KIND_IMAGE and image.attachments[0].url.endswith("/a.jpg")
    assert product.kind == MessageKind.MESSAGE_KIND_PRODUCT_CARD and product.commerce.sku == "SKU-10086"
    assert order.kind == MessageKind.MESSAGE_KIND_ORDER_CARD
    assert (order.commerce.order_id, order.commerce.order_status) == ("202311110001", "")
    assert order.attributes["card_order_status"] == "shipped"
    assert emoji.kind == MessageKind.MESSAGE_KIND_EMOJI and emoji.text == "👍"
    for raw in (bytes(m.SerializeToString()) for m in messages if isinstance(m, InboundMessage)):
        assert b"13812341234" not in raw


async def test_messages_keep_their_order_and_a_resend_is_one_record(settings: ServiceSettings) -> None:
    topics = Topics(settings.topic_prefix)
    count = 40
    async with (
        running_chat(chat_settings(settings, chat_conn_burst=1000, chat_customer_rate_per_window=1000)) as chat,
        connect(chat.ws_url("shop-b", "buyer-9")) as ws,
    ):
        await next_frame(ws, "hello")
        for i in range(count):  # pipelined: no waiting for acks in between
            await send_message(ws, f"n{i}", text=f"message {i}")
        acks = [await next_frame(ws, "ack") for _ in range(count)]
        assert [a["client_msg_id"] for a in acks] == [f"n{i}" for i in range(count)]
        await send_message(ws, "n7", text="message 7")  # the client lost the ack and sends it again
        again = await next_frame(ws, "ack")
        assert again["duplicate"] and again["message_id"] == acks[7]["message_id"]
        records = await read_topic(settings.kafka_bootstrap, topics.inbound, count)
    texts = [m.text for _, m in records if isinstance(m, InboundMessage)]
    assert texts == [f"message {i}" for i in range(count)]


async def test_frames_sent_together_are_answered_in_their_order_and_a_repeat_among_them_is_a_duplicate(
    settings: ServiceSettings,
) -> None:
    """The socket's reader reads ahead and the worker takes what was read as one batch: every answer still comes
    in the order of the frames, and a message sent twice in one batch is one record (the second a duplicate)."""
    topics = Topics(settings.topic_prefix)
    async with (
        running_chat(chat_settings(settings, chat_conn_burst=1000, chat_customer_rate_per_window=1000)) as chat,
        connect(chat.ws_url("shop-b", "buyer-12")) as ws,
    ):
        await next_frame(ws, "hello")
        rounds = 5
        for r in range(rounds):  # nothing awaited in between: the frames reach the adapter together
            await send_message(ws, f"r{r}-a", text=f"first of round {r}")
            await ws.send(json.dumps({"type": "ping"}))
            await ws.send(json.dumps({"type": "wave", "client_msg_id": f"r{r}-w"}))
            await send_message(ws, f"r{r}-a", text=f"first of round {r}")
            await send_message(ws, f"r{r}-b", text=f"second of round {r}")
        answers: list[dict[str, object]] = []
        async with asyncio.timeout(10):
            while len(answers) < 5 * rounds:
                frame = json.loads(await ws.recv())
                if frame["type"] in ("ack", "pong", "error"):
                    answers.append(frame)
        records = await read_topic(settings.kafka_bootstrap, topics.inbound, 2 * rounds)
    for r in range(rounds):
        first, pong, error, repeat, second = answers[5 * r : 5 * r + 5]
        assert (first["type"], first["client_msg_id"], first["duplicate"]) == ("ack", f"r{r}-a", False)
        assert pong["type"] == "pong"
        assert (error["type"], error["code"]) == ("error", "invalid")
        assert (repeat["type"], repeat["client_msg_id"], repeat["duplicate"]) == ("ack", f"r{r}-a", True)
        assert repeat["message_id"] == first["message_id"]
        assert (second["type"], second["client_msg_id"], second["duplicate"]) == ("ack", f"r{r}-b", False)
    texts = [m.text for _, m in records if isinstance(m, InboundMessage)]
    assert texts == [t for r in range(rounds) for t in (f"first of round {r}", f"second of round {r}")]


async def test_bad_frames_get_an_error_and_a_masked_dead_letter_and_the_socket_stays_usable(
    settings: ServiceSettings,
) -> None:
    topics = Topics(settings.topic_prefix)
    cs = chat_settings(settings, chat_max_frame_bytes=2048, chat_max_text_chars=100)
    async with running_chat(cs) as chat, connect(chat.ws_url("shop-a", "buyer-2")) as ws:
        await next_frame(ws, "hello")
        # Frames that are not JSON text at all close the socket (tests/integration/test_hostile_input.py); these
        # are JSON a widget may get wrong, answered with an error frame on a socket that stays open.
        await ws.send(json.dumps({"type": "message", "text": "no client id, call me 13812341234"}))
        await ws.send(json.dumps(["not", "an", "object"]))
        await send_message(ws, "b1", kind="sticker", text="?")
        await send_message(ws, "b2", kind="order_card", order_status="paid")
        await send_message(ws, "b3", text="x" * 101)
        errors = [await next_frame(ws, "error") for _ in range(5)]
        assert [e["code"] for e in errors] == ["invalid", "invalid", "invalid", "invalid", "too_large"]
        assert [e["client_msg_id"] for e in errors][2:5] == ["b1", "b2", "b3"]
        assert "order_id" in errors[3]["message"]
        await send_message(ws, "ok", text="still here")
        assert (await next_frame(ws, "ack"))["client_msg_id"] == "ok"
        letters = await read_topic(settings.kafka_bootstrap, topics.dlq, 5)
    assert len(letters) == 5
    for _, letter in letters:
        assert isinstance(letter, DeadLetter)
        assert letter.tenant_id == "shop-a" and letter.source == "ws:/chat/v1/ws" and letter.reason
        assert b"13812341234" not in letter.original
    assert any(b"138****1234" in letter.original for _, letter in letters if isinstance(letter, DeadLetter))


async def test_unknown_tenants_and_forged_tokens_are_closed_with_a_clear_code(settings: ServiceSettings) -> None:
    secret, past = SECRETS["shop-a"].encode(), int(time.time()) - 1
    async with running_chat(chat_settings(settings)) as chat:
        future = int(time.time()) + 600
        token = widget_token(secret, "buyer-3", future)
        async with connect(chat.ws_url("shop-a", "buyer-3", token=token) + f"&expires={future}") as ws:
            await next_frame(ws, "hello")
        for url, code in [
            (chat.ws_url("shop-a", "buyer-3", token="forged"), 4401),
            (chat.ws_url("shop-a", "buyer-3").replace("shop-a", "shop-x"), 4404),
            # A token of shop-b does not open a socket at shop-a: tenants never see each other's customers.
            (chat.ws_url("shop-b", "buyer-3").replace("tenant=shop-b", "tenant=shop-a"), 4401),
            (chat.ws_url("shop-a", "buyer-3", token=widget_token(secret, "buyer-3", past)) + f"&expires={past}", 4401),
            (chat.ws_url("shop-a", "buyer-3") + "&expires=tomorrow", 4401),
        ]:
            async with connect(url) as ws:
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.recv()
                assert closed.value.rcvd is not None and closed.value.rcvd.code == code


async def test_the_claims_of_a_signed_token_are_the_records_facts_and_a_forged_claim_is_refused(
    settings: ServiceSettings,
) -> None:
    topics = Topics(settings.topic_prefix)
    claims = encode_claims({"member_tier": "88VIP", "order_id": "2408151234567890", "dispute_stage": "claim_open"})
    async with running_chat(chat_settings(settings)) as chat:
        async with connect(chat.claims_url("shop-a", "buyer-7", claims)) as ws:
            await next_frame(ws, "hello")
            # The browser's own tier is ignored: the token's stands.
            await send_message(ws, "c1", text="退款的事怎么样了", member_tier="super_vip")
            ack = await next_frame(ws, "ack")
        forged = encode_claims({"member_tier": "super_vip"})
        refused = [
            # Claims the token was not signed for (the shop signed 88VIP, the browser sends super_vip).
            (chat.claims_url("shop-a", "buyer-7", forged, signed_claims=claims), 4401),
            # Claims added to a claim-less token.
            (chat.ws_url("shop-a", "buyer-7") + f"&claims={forged}", 4401),
            # Signed, but not claims at all.
            (chat.claims_url("shop-a", "buyer-7", "bm90LWpzb24"), 4400),
        ]
        for url, code in refused:
            async with connect(url) as ws:
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.recv()
                assert closed.value.rcvd is not None and closed.value.rcvd.code == code
        [(_, record)] = await read_topic(settings.kafka_bootstrap, topics.inbound, 1)
    assert isinstance(record, InboundMessage) and record.message_id == ack["message_id"]
    assert (record.customer.member_tier, record.customer.tier_source) == ("88VIP", "widget_token")
    commerce = record.commerce
    assert (commerce.order_id, commerce.dispute_stage, commerce.facts_source) == (
        "2408151234567890",
        "claim_open",
        "widget_token",
    )


async def test_a_flooding_customer_is_limited_and_closed_while_another_is_served_promptly(
    settings: ServiceSettings,
) -> None:
    # A bucket that hardly refills: the flood's acks are its burst, however long a loaded machine takes to send it.
    cs = chat_settings(settings, chat_conn_rate_per_s=0.01)
    async with (
        running_chat(cs) as chat,
        connect(chat.ws_url("shop-a", "flooder")) as flood,
        connect(chat.ws_url("shop-a", "calm")) as calm,
    ):
        await next_frame(flood, "hello")
        await next_frame(calm, "hello")

        async def flood_it() -> list[str]:
            codes: list[str] = []
            try:
                for i in range(500):
                    await send_message(flood, f"f{i}", text=f"buy buy buy {i}")
                async for raw in flood:
                    codes.append(json.loads(raw)["type"])
            except ConnectionClosed:
                pass
            return codes

        flooding = asyncio.create_task(flood_it())
        latencies = []
        for i in range(8):
            started = time.perf_counter()
            await send_message(calm, f"c{i}", text=f"is size M in stock? {i}")
            assert (await next_frame(calm, "ack"))["client_msg_id"] == f"c{i}"
            latencies.append(time.perf_counter() - started)
            await asyncio.sleep(0.25)  # a person typing: well within the limits
        codes = await asyncio.wait_for(flooding, 15)
    assert max(latencies) < 1.0, latencies
    assert "error" in codes and codes.count("ack") <= 10
    assert flood.close_code == 1008


async def test_the_customer_limit_holds_across_their_connections(settings: ServiceSettings) -> None:
    # A long window, so the six messages do not straddle two windows.
    cs = chat_settings(settings, chat_customer_rate_per_window=5, chat_customer_rate_window_s=3600)
    async with (
        running_chat(cs) as chat,
        connect(chat.ws_url("shop-a", "two-tabs")) as tab1,
        connect(chat.ws_url("shop-a", "two-tabs")) as tab2,
    ):
        for ws in (tab1, tab2):
            await next_frame(ws, "hello")
        answers = []
        for i in range(6):
            ws = (tab1, tab2)[i % 2]
            await send_message(ws, f"t{i}", text="hello")
            async with asyncio.timeout(10):
                while (frame := json.loads(await ws.recv()))["type"] not in ("ack", "error"):
                    pass
            answers.append(frame.get("code", frame["type"]))
    assert answers == ["ack"] * 5 + ["rate_limited"]


async def test_one_customer_may_not_hold_more_sockets_than_the_limit(settings: ServiceSettings) -> None:
    async with (
        running_chat(chat_settings(settings, chat_max_sockets_per_customer=2)) as chat,
        connect(chat.ws_url("shop-a", "many-tabs")) as tab1,
        connect(chat.ws_url("shop-a", "many-tabs")) as tab2,
    ):
        for ws in (tab1, tab2):
            await next_frame(ws, "hello")
        async with connect(chat.ws_url("shop-a", "many-tabs")) as tab3:
            with pytest.raises(ConnectionClosed):
                await tab3.recv()
            assert tab3.close_code == 1008
        async with connect(chat.ws_url("shop-a", "another")) as other:
            await next_frame(other, "hello")
