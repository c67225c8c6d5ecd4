"""The phone adapter's websocket, with a real `websockets` client: acks, live partials, order, refusals."""

from __future__ import annotations

import json
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from switchboard.contracts import DeadLetter, DeskEventType, InboundMessage, MessageKind
from switchboard.phone.records import conversation_id
from switchboard.runtime.settings import ServiceSettings
from switchboard.runtime.topics import Topics
from switchboard.state.keys import Keys
from switchboard.state.outbox import read_outbox
from tests.helpers import read_topic
from tests.integration.phone_service import SHOP_A_KEY, running_phone, segment, started
from tests.redis_cluster import on_both_redis_backends

pytestmark = [pytest.mark.broker, on_both_redis_backends]


async def _send(ws: ClientConnection, frame_id: str, *items: dict[str, Any]) -> None:
    await ws.send(json.dumps({"id": frame_id, "items": list(items)}, ensure_ascii=False))


async def _answers(ws: ClientConnection, count: int) -> dict[str, dict[str, Any]]:
    """The next `count` answer frames by frame id."""
    found = {}
    for _ in range(count):
        frame = json.loads(await ws.recv(decode=True))
        found[frame["id"]] = frame
    return found


async def test_each_frame_is_acked_after_kafka_and_out_of_order_frames_become_messages_in_order(
    settings: ServiceSettings,
) -> None:
    async with running_phone(settings) as phone, connect(phone.ws, additional_headers=SHOP_A_KEY) as ws:
        await _send(ws, "f0", started("ws-1", language="en-US"))
        assert (await _answers(ws, 1))["f0"]["results"] == [{"ref": "ws-1:call.started", "status": "accepted"}]
        await _send(ws, "f0b", segment("ws-1", 0, "hi"))
        assert (await _answers(ws, 1))["f0b"]["type"] == "ack", "a platform numbering from 0 is on time"
        await _send(ws, "f3", segment("ws-1", 3, "and the colour is wrong"))
        await _send(ws, "f2", segment("ws-1", 2, "the parcel arrived damaged"))
        await _send(ws, "f1", segment("ws-1", 1, "hello"), {"type": "call.ended", "call_id": "ws-1"})
        answers = await _answers(ws, 3)
        assert {a["type"] for a in answers.values()} == {"ack"}
        assert answers["f2"]["results"] == [{"ref": "ws-1:seg:2", "status": "accepted"}]
    records = await read_topic(settings.kafka_bootstrap, Topics(settings.topic_prefix).inbound, 6)
    messages: list[InboundMessage] = [m for _, m in records]  # type: ignore[misc]
    finals = [m for m in messages if m.kind == MessageKind.MESSAGE_KIND_TRANSCRIPT]
    assert [m.phone.segment_seq for m in finals] == [0, 1, 2, 3]
    assert not any("out_of_order" in m.attributes for m in finals)
    assert all(m.language == "en" for m in messages)


async def test_frames_sent_without_waiting_keep_the_calls_lifecycle_order(settings: ServiceSettings) -> None:
    async with running_phone(settings) as phone, connect(phone.ws, additional_headers=SHOP_A_KEY) as ws:
        await _send(ws, "start", started("ws-5"))
        for seq in (1, 2, 3):
            await _send(ws, f"s{seq}", segment("ws-5", seq, f"part {seq}"))
        await _send(ws, "answered", {"type": "call.answered", "call_id": "ws-5"})
        await _send(ws, "s4", segment("ws-5", 4, "part 4"))
        await _send(ws, "end", {"type": "call.ended", "call_id": "ws-5"})
        answers = await _answers(ws, 7)
        assert {a["type"] for a in answers.values()} == {"ack"}, answers
    records = await read_topic(settings.kafka_bootstrap, Topics(settings.topic_prefix).inbound, 7)
    refs = [m.provider_message_id for _, m in records]  # type: ignore[attr-defined]
    assert refs[0] == "ws-5:call.started"
    assert refs[-1] == "ws-5:call.ended"
    assert [r for r in refs if ":seg:" in r] == [f"ws-5:seg:{n}" for n in (1, 2, 3, 4)]
    assert len(refs) == 7


async def test_partials_reach_the_owning_agents_desk_live_and_never_the_inbound_topic(
    settings: ServiceSettings, redis: Any
) -> None:
    keys = Keys(settings.key_prefix)
    async with running_phone(settings) as phone, connect(phone.ws, additional_headers=SHOP_A_KEY) as ws:
        await _send(ws, "f0", started("ws-2"))
        await _send(ws, "f1", segment("ws-2", 1, "我想", final=False))
        answers = await _answers(ws, 2)
        assert answers["f1"]["results"] == [{"ref": "ws-2:partial:1", "status": "no_owner"}]
        # The router assigned the call to an agent.
        await redis.hset(
            keys.conversation("shop-a", conversation_id("shop-a", "ws-2")), mapping={"owner": "a-lina", "epoch": 4}
        )
        await _send(ws, "f2", segment("ws-2", 1, "我想改地址，手机13812345678", final=False))
        await _send(ws, "f3", segment("ws-2", 1, "我想改地址，手机13812345678。"))
        answers = await _answers(ws, 2)
        assert answers["f2"]["results"] == [{"ref": "ws-2:partial:1", "status": "forwarded"}]
        assert answers["f3"]["results"] == [{"ref": "ws-2:seg:1", "status": "accepted"}]
    [live] = await read_outbox(redis, keys, "shop-a", "a-lina", 0)
    assert live.type == DeskEventType.DESK_EVENT_TRANSCRIPT
    assert live.epoch == 4
    assert live.message.text == "我想改地址，手机138****5678"
    assert not live.message.phone.is_final
    records = await read_topic(settings.kafka_bootstrap, Topics(settings.topic_prefix).inbound, 2)
    [final] = [m for _, m in records if m.kind == MessageKind.MESSAGE_KIND_TRANSCRIPT]  # type: ignore[attr-defined]
    assert final.phone.is_final, "the final segment is the only transcript record"


async def test_bad_frames_get_an_error_frame_and_a_dlq_record_and_the_socket_stays_open(
    settings: ServiceSettings,
) -> None:
    async with running_phone(settings) as phone, connect(phone.ws, additional_headers=SHOP_A_KEY) as ws:
        await ws.send('{"id": "bad", "items": [')
        await _send(ws, "unknown", segment("no-such-call", 1, "hi 13812345678"))
        await _send(ws, "backwards", started("ws-3"), {**segment("ws-3", 1, "x"), "end_ms": 10})
        answers = await _answers(ws, 3)
        assert answers["unknown"]["code"] == "unknown_call"
        assert answers["backwards"]["code"] == "invalid"
        assert "before it starts" in answers["backwards"]["reason"]
        assert answers[""]["code"] == "bad_json"
        await _send(ws, "ok", started("ws-3"))
        assert (await _answers(ws, 1))["ok"]["type"] == "ack"
    letters = await read_topic(settings.kafka_bootstrap, Topics(settings.topic_prefix).dlq, 3)
    assert sorted(letter.error_type for _, letter in letters) == ["bad_json", "invalid", "unknown_call"]  # type: ignore[attr-defined]
    for _, letter in letters:
        assert isinstance(letter, DeadLetter)
        assert letter.source == "ws:/v1/phone/stream"
        assert b"13812345678" not in letter.original


async def test_close_codes_for_an_unknown_key_and_an_oversize_frame(settings: ServiceSettings) -> None:
    async with running_phone(settings, phone_max_frame_bytes=2048) as phone:
        async with connect(phone.ws, additional_headers={"X-Api-Key": "nope"}) as ws:
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
        async with connect(phone.ws, additional_headers=SHOP_A_KEY) as ws:
            await _send(ws, "big", started("ws-4"), segment("ws-4", 1, "长" * 3000))
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    [(_, letter)] = await read_topic(settings.kafka_bootstrap, Topics(settings.topic_prefix).dlq, 1)
    assert letter.error_type == "too_large"  # type: ignore[attr-defined]


async def test_a_flood_of_malformed_frames_closes_the_socket_1008_past_its_budget(settings: ServiceSettings) -> None:
    """Each malformed frame spends a token of the socket's budget (3 here, refilled slowly): the fourth closes the
    socket 1008 and leaves no DLQ record; well-formed items of unknown calls spend none."""
    async with running_phone(settings, phone_ws_refused_per_s=0.01, phone_ws_refused_burst=3) as phone:
        async with connect(phone.ws, additional_headers=SHOP_A_KEY) as ws:
            for n in range(5):
                await _send(ws, f"unknown-{n}", segment("no-such-call", 1, "hi"))
            answers = await _answers(ws, 5)
            assert {a["code"] for a in answers.values()} == {"unknown_call"}
            for n in range(3):
                await ws.send(f'{{"id": "bad-{n}", "items": [')
            assert [a["code"] for a in (await _answers(ws, 3)).values()] == ["bad_json"]
            await ws.send('{"id": "bad-3", "items": [')
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
        assert closed.value.rcvd.reason == "too many refused frames"
    letters = await read_topic(settings.kafka_bootstrap, Topics(settings.topic_prefix).dlq, 8)
    kinds = sorted(letter.error_type for _, letter in letters)  # type: ignore[attr-defined]
    assert kinds == ["bad_json"] * 3 + ["unknown_call"] * 5
