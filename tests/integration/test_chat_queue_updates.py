"""Waiting chat customers see their place and the router's estimated wait for the chat queue of their group, as
they change; the e-mail backlog of the same group does not move the chat estimate; a deployment that keeps queue
frames for surges sends them only while the tenant's profile asks for chat updates."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection

from switchboard.contracts import Channel, RoutingEvent, RoutingEventType
from switchboard.runtime.kafka import RecordProducer
from switchboard.runtime.settings import ServiceSettings
from switchboard.runtime.topics import Topics
from switchboard.state.keys import Keys
from tests.integration.chat_service import chat_settings, connect, next_frame, running_chat
from tests.integration.updates_support import put_estimate, put_queued, switch_off, switch_on
from tests.redis_cluster import on_both_redis_backends

pytestmark = [pytest.mark.broker, on_both_redis_backends]


async def frames_until_pong(ws: ClientConnection, settle_s: float = 0.6) -> list[dict[str, Any]]:
    """Every frame the socket gets over `settle_s` (several watch rounds), up to a pong asked for after it."""
    await asyncio.sleep(settle_s)
    await ws.send(json.dumps({"type": "ping"}))
    got = []
    async with asyncio.timeout(10):
        while (frame := json.loads(await ws.recv()))["type"] != "pong":
            got.append(frame)
    return got


async def test_the_queue_frame_carries_the_chat_estimate_and_an_email_backlog_does_not_move_it(
    settings: ServiceSettings, redis: Redis
) -> None:
    keys = Keys(settings.key_prefix)
    await put_estimate(redis, keys, "shop-a", "presales", "chat", 20, 3)
    await put_estimate(redis, keys, "shop-a", "presales", "email", 600, 40)
    cs = chat_settings(settings, chat_queue_refresh_s=0.1, chat_seconds_per_queue_position=999)
    async with running_chat(cs) as chat, connect(chat.ws_url("shop-a", "in-line")) as ws:
        conv = (await next_frame(ws, "hello"))["conversation_id"]
        await put_queued(redis, keys, "shop-a", conv, "presales", "chat", ahead=2)
        assert await next_frame(ws, "queue") == {
            "type": "queue",
            "conversation_id": conv,
            "position": 3,
            "estimated_wait_s": 60,
        }
        # The group's e-mail queue grows tenfold: nothing changes for the chat customer.
        await put_estimate(redis, keys, "shop-a", "presales", "email", 900, 400)
        await put_queued(redis, keys, "shop-a", "email-backlog", "presales", "email", ahead=50)
        assert [f for f in await frames_until_pong(ws) if f["type"] == "queue"] == []
        # The chat estimate moves (agents went on break): the same place, a new wait.
        await put_estimate(redis, keys, "shop-a", "presales", "chat", 45, 3)
        assert (await next_frame(ws, "queue"))["estimated_wait_s"] == 135
        # A change below SB_CHAT_QUEUE_WAIT_CHANGE_S (15 s) is not worth a frame; a new place always is.
        await put_estimate(redis, keys, "shop-a", "presales", "chat", 47, 3)
        assert [f for f in await frames_until_pong(ws) if f["type"] == "queue"] == []
        await redis.zrem(keys.queue_channel("shop-a", "presales", "chat"), f"{conv}-ahead-0")
        frame = await next_frame(ws, "queue")
        assert (frame["position"], frame["estimated_wait_s"]) == (2, 94)


def queued(conversation_id: str, group: str, position: int) -> RoutingEvent:
    """The router's QUEUED decision for a chat conversation."""
    return RoutingEvent(
        event_id=f"ev-{conversation_id}-{position}",
        tenant_id="shop-a",
        conversation_id=conversation_id,
        type=RoutingEventType.ROUTING_EVENT_QUEUED,
        channel=Channel.CHANNEL_CHAT,
        skill_group=group,
        queue_position=position,
    )


async def test_frames_kept_for_surges_go_out_only_while_the_profile_asks_for_chat_updates(
    settings: ServiceSettings, redis: Redis, producer: RecordProducer
) -> None:
    keys = Keys(settings.key_prefix)
    topics = Topics(settings.topic_prefix)
    await put_estimate(redis, keys, "shop-a", "aftersales", "chat", 30, 4)
    cs = chat_settings(settings, chat_queue_refresh_s=0.1, chat_queue_frames_always=False)
    async with running_chat(cs) as chat, connect(chat.ws_url("shop-a", "surge-1")) as ws:
        conv = (await next_frame(ws, "hello"))["conversation_id"]
        await switch_on(redis, keys, "shop-a", email=True, phone=True)  # a profile, but not for chat
        await put_queued(redis, keys, "shop-a", conv, "aftersales", "chat", ahead=3)
        await producer.send(topics.routing, conv, queued(conv, "aftersales", 4))
        assert [f for f in await frames_until_pong(ws, 1.5) if f["type"] == "queue"] == []
        await switch_on(redis, keys, "shop-a", chat=True)
        frame = await next_frame(ws, "queue")
        assert (frame["position"], frame["estimated_wait_s"]) == (4, 120)
        # The router's decision is told at once too, with the router's estimate for the place it names (a frame
        # for the earlier decision may still come first when the consumer was slow to join).
        await producer.send(topics.routing, conv, queued(conv, "aftersales", 2))
        frame = await next_frame(ws, "queue")
        while frame["position"] == 4:
            frame = await next_frame(ws, "queue")
        assert (frame["position"], frame["estimated_wait_s"]) == (2, 60)
        await switch_off(redis, keys, "shop-a")
        await frames_until_pong(ws, 0.3)  # a round that read the profile before the switch may still finish
        await redis.zrem(keys.queue_channel("shop-a", "aftersales", "chat"), f"{conv}-ahead-0")
        assert [f for f in await frames_until_pong(ws) if f["type"] == "queue"] == []
