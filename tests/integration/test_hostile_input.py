"""Hostile JSON on the chat widget, the chat webhook and the desk socket: JSON nested thousands deep, escaped lone
surrogates, control characters. Each is refused with its documented close code or HTTP status (and a DLQ record
where the docs promise one); the service keeps serving."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from switchboard.contracts import DeadLetter
from switchboard.runtime.settings import ServiceSettings
from switchboard.runtime.topics import Topics
from tests.helpers import read_topic
from tests.integration.chat_service import chat_settings, connect, next_frame, running_chat, send_message, signed
from tests.integration.gateway_support import Desk, gateway_settings, roster_loaded, running_gateway, token

pytestmark = [pytest.mark.broker]

DEEP = "[" * 5000 + "]" * 5000
SURROGATE = '{"type": "message", "client_msg_id": "s1", "text": "call 13812341234 \\ud800"}'
CONTROL = '{"type": "message", "client_msg_id": "c1", "text": "bell\\u0007"}'


async def _closed_with(ws: ClientConnection, timeout: float = 10.0) -> tuple[int | None, list[dict[str, object]]]:
    """The close code the server sent, and the frames that came before it."""
    frames: list[dict[str, object]] = []
    try:
        while True:
            frames.append(json.loads(await ws.recv()))
    except ConnectionClosed as exc:
        return (exc.rcvd.code if exc.rcvd else None), frames


@pytest.mark.parametrize(("raw", "kind"), [(DEEP, "too_deep"), (SURROGATE, "invalid_text"), (CONTROL, "invalid_text")])
async def test_widget_closes_hostile_frames_with_1007_and_a_dead_letter(
    settings: ServiceSettings, raw: str, kind: str
) -> None:
    topics = Topics(settings.topic_prefix)
    async with running_chat(chat_settings(settings)) as chat:
        async with connect(chat.ws_url("shop-a", "buyer-h")) as ws:
            await next_frame(ws, "hello")
            await ws.send(raw)
            code, frames = await _closed_with(ws)
        assert code == 1007
        assert [(f["type"], f["code"]) for f in frames if f["type"] == "error"] == [("error", "invalid")]
        # The service still serves: a new socket of the same customer sends a message that is acked.
        async with connect(chat.ws_url("shop-a", "buyer-h")) as ws:
            await next_frame(ws, "hello")
            await send_message(ws, "ok", text="still here")
            assert (await next_frame(ws, "ack"))["client_msg_id"] == "ok"
        letters = await read_topic(settings.kafka_bootstrap, topics.dlq, 1)
    letter = letters[0][1]
    assert isinstance(letter, DeadLetter)
    assert (letter.error_type, letter.source, letter.tenant_id) == (kind, "ws:/chat/v1/ws", "shop-a")
    assert b"13812341234" not in letter.original


async def test_widget_closes_an_oversized_frame_with_1009(settings: ServiceSettings) -> None:
    cs = chat_settings(settings, chat_max_frame_bytes=2048)
    async with running_chat(cs) as chat, connect(chat.ws_url("shop-a", "buyer-big")) as ws:
        await next_frame(ws, "hello")
        await send_message(ws, "big", text="x" * 3000)
        code, frames = await _closed_with(ws)
    assert code == 1009
    assert [f["code"] for f in frames if f["type"] == "error"] == ["too_large"]


@pytest.mark.parametrize(
    ("body", "status", "kind"),
    [
        (b'{"event_id": "e1", "a": ' + b"[" * 5000 + b"]" * 5000 + b"}", 400, "too_deep"),
        (b'{"event_id": "e2", "message_id": "m2", "customer_id": "\\ud800", "text": "hi"}', 400, "invalid_text"),
        (
            b'{"event_id": "e3", "message_id": "m3", "customer_id": "b", "text": "\\udfff 13812341234"}',
            400,
            "invalid_text",
        ),
        (b'{"event_id": "e4", "message_id": "m4", "customer_id": "b", "text": "n", "x": NaN}', 400, "invalid_json"),
        (b'{"event_id": "e5", "message_id": "m5", "customer_id": "b\\u0000", "text": "n"}', 400, "invalid_text"),
    ],
)
async def test_signed_webhook_answers_hostile_json_with_400_and_a_dead_letter(
    settings: ServiceSettings, body: bytes, status: int, kind: str
) -> None:
    topics = Topics(settings.topic_prefix)
    async with running_chat(chat_settings(settings)) as chat, httpx.AsyncClient(base_url=chat.base) as http:
        raw, headers = signed("shop-a", body, int(time.time()))
        response = await http.post("/chat/v1/webhook/shop-a", content=raw, headers=headers)
        assert response.status_code == status, response.text
        assert response.json()["error"] == kind and response.json()["detail"]
        letters = await read_topic(settings.kafka_bootstrap, topics.dlq, 1)
    letter = letters[0][1]
    assert isinstance(letter, DeadLetter) and letter.error_type == kind and letter.tenant_id == "shop-a"
    assert b"13812341234" not in letter.original


@pytest.mark.parametrize("raw", [DEEP, '{"type": "auth", "token": "\\ud800"}', '{"type": "auth", "x": ' + DEEP + "}"])
async def test_desk_refuses_a_hostile_first_frame_with_1007(settings: ServiceSettings, redis: Redis, raw: str) -> None:
    gs = gateway_settings(settings)
    async with running_gateway(gs) as gw, connect(gw.url, origin=None) as ws:  # type: ignore[arg-type]
        await ws.send(raw)
        code, frames = await _closed_with(ws)
    assert (code, frames) == (1007, [])
    assert gw.app_errors == []


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        (DEEP, "too_deep"),
        ('{"type": "reply", "id": "r1", "conversation_id": "c-1", "epoch": 1, "text": "\\ud800"}', "invalid_text"),
        ('{"type": "set_status", "id": "r2", "status": "away", "reason": "\\u001b[2J"}', "invalid_text"),
    ],
)
async def test_desk_closes_a_session_on_hostile_frames_with_1007(
    settings: ServiceSettings, redis: Redis, raw: str, kind: str
) -> None:
    gs = gateway_settings(settings)
    await roster_loaded(gs, redis)
    async with running_gateway(gs) as gw:
        desk = await Desk.open(gw.url, token("shop-a", "a-lina"))
        await desk.ws.send(raw)
        code, frames = await _closed_with(desk.ws)
        assert code == 1007
        assert [f.get("code") for f in frames if f["type"] == "error"] == [kind]
        # The agent logs in again and works.
        desk = await Desk.open(gw.url, token("shop-a", "a-lina"))
        assert (await desk.command({"type": "heartbeat", "id": "h1"}))["type"] == "result"
        await desk.close()
    assert gw.app_errors == []


async def test_desk_answers_a_frame_whose_type_is_no_string_and_keeps_the_session(
    settings: ServiceSettings, redis: Redis
) -> None:
    gs = gateway_settings(settings)
    await roster_loaded(gs, redis)
    async with running_gateway(gs) as gw:
        desk = await Desk.open(gw.url, token("shop-a", "a-lina"))
        for i, kind in enumerate(([1, 2], {"reply": 1}, None, ["reply"] * 2000)):
            frame = {"type": kind, "id": f"t{i}", "conversation_id": "c-1", "epoch": 1, "text": "hi"}
            answer = await desk.command(frame)
            assert (answer["type"], answer["code"]) == ("error", "unknown_type"), answer
        assert (await desk.command({"type": "heartbeat", "id": "h1"}))["type"] == "result"
        await desk.close()
    assert gw.app_errors == []
