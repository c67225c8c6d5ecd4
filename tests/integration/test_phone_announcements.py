"""Announcements for waiting callers in the answer to the call's events (HTTP and websocket), from the router's
state for the call's conversation, or the tenant's phone queue before the router decided; only while the tenant's
surge profile asks for phone updates."""

from __future__ import annotations

import json

import httpx
import pytest
from redis.asyncio import Redis
from websockets.asyncio.client import connect

from switchboard.phone.records import conversation_id
from switchboard.runtime.settings import ServiceSettings
from switchboard.state.keys import Keys
from tests.integration.phone_service import SHOP_A_KEY, running_phone, segment, started
from tests.integration.updates_support import put_estimate, put_queued, switch_off, switch_on
from tests.redis_cluster import on_both_redis_backends

pytestmark = [pytest.mark.broker, on_both_redis_backends]

EVENTS = "/v1/phone/events"


async def test_a_waiting_caller_is_told_the_place_and_the_wait_in_the_answer(
    settings: ServiceSettings, redis: Redis
) -> None:
    keys = Keys(settings.key_prefix)
    await switch_on(redis, keys, "shop-a", phone=True)
    # Three callers wait: two for after-sales (2 min a place), one for pre-sales (1 min a place).
    await put_estimate(redis, keys, "shop-a", "after_sales", "phone", 120, 2)
    await put_estimate(redis, keys, "shop-a", "presales", "phone", 60, 1)
    await put_estimate(redis, keys, "shop-a", "complaints", "phone", 900, 0)  # nobody waits there: not its wait
    await put_estimate(redis, keys, "shop-a", "after_sales", "chat", 5, 90)  # the chat queue says nothing here
    async with running_phone(settings) as phone, httpx.AsyncClient(base_url=phone.http, headers=SHOP_A_KEY) as http:
        # Before the router decided: behind everyone waiting on the phone, the longest group's wait.
        first = (await http.post(EVENTS, json={"id": "b1", "items": [started("ann-1", language="zh-CN")]})).json()
        assert first["announcements"] == [
            {
                "call_id": "ann-1",
                "text": "您好，目前咨询较多，您前面还有 3 位顾客，预计等待约 10 分钟，请不要挂机。",
                "lang": "zh",
                "position": 4,
                "estimated_wait_s": 360,
            }
        ]
        # The router queued it second in after-sales' phone queue.
        await put_queued(redis, keys, "shop-a", conversation_id("shop-a", "ann-1"), "after_sales", "phone", ahead=1)
        later = (await http.post(EVENTS, json={"id": "b2", "items": [segment("ann-1", 1, "喂，你好")]})).json()
        [told] = later["announcements"]
        assert (told["position"], told["estimated_wait_s"], told["lang"]) == (2, 240, "zh")
        # An English hotline's caller hears English; a call answered in the same delivery hears nothing.
        english = started("ann-2", hotline="400-800-1009")
        both = await http.post(
            EVENTS, json={"id": "b3", "items": [english, {"type": "call.answered", "call_id": "ann-1"}]}
        )
        [told] = both.json()["announcements"]
        assert told["call_id"] == "ann-2" and told["lang"] == "en"
        assert told["text"].startswith("Thank you for calling.") and "number 4 in the queue" in told["text"]
        # Taken by an agent: no announcement.
        await redis.hset(keys.conversation("shop-a", conversation_id("shop-a", "ann-2")), "state", "assigned")
        answer = (await http.post(EVENTS, json={"id": "b4", "items": [segment("ann-2", 1, "hello")]})).json()
        assert "announcements" not in answer and answer["results"][0]["status"] == "accepted"
        # Without the profile the answer is as it always was.
        await switch_off(redis, keys, "shop-a")
        answer = (await http.post(EVENTS, json={"id": "b5", "items": [segment("ann-1", 2, "还在吗")]})).json()
        assert answer == {"id": "b5", "results": [{"ref": "ann-1:seg:2", "status": "accepted"}]}


async def test_the_websocket_ack_carries_the_announcement_and_nobody_waiting_means_none(
    settings: ServiceSettings, redis: Redis
) -> None:
    keys = Keys(settings.key_prefix)
    await switch_on(redis, keys, "shop-a", phone=True)
    await put_estimate(redis, keys, "shop-a", "logistics", "phone", 90, 0)
    async with running_phone(settings) as phone, connect(phone.ws, additional_headers=SHOP_A_KEY) as ws:
        await ws.send(json.dumps({"id": "f1", "items": [started("ws-ann", language="en-US")]}))
        ack = json.loads(await ws.recv())
        assert ack["type"] == "ack" and "announcements" not in ack, "no caller waits: an agent is most likely free"
        await put_queued(redis, keys, "shop-a", conversation_id("shop-a", "ws-ann"), "logistics", "phone", ahead=0)
        await ws.send(json.dumps({"id": "f2", "items": [segment("ws-ann", 1, "hello?")]}))
        ack = json.loads(await ws.recv())
        assert ack["announcements"] == [
            {
                "call_id": "ws-ann",
                "text": "Thank you for calling. All our agents are busy: you are next in line. "
                "The estimated wait is about 2 minutes. Please hold.",
                "lang": "en",
                "position": 1,
                "estimated_wait_s": 90,
            }
        ]
