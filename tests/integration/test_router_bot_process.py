"""Bot-first answers through the router process on Kafka: the answer on sb.outbound.v1 and ANSWERED_BY_BOT on
sb.routing.v1, then 转人工 reaches an agent with the original arrival; a router killed mid-lookup loses nothing."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from redis.asyncio import Redis

from switchboard.contracts import OutboundMessage, RoutingEvent, RoutingEventType
from switchboard.runtime.kafka import RecordProducer
from switchboard.runtime.settings import ServiceSettings
from switchboard.state.keys import Keys
from switchboard_tools.orders import Order, OrderBook, OrderServer
from switchboard_tools.stack.procs import free_port
from tests.helpers import eventually, read_topic
from tests.integration.router_procs import start_router, stop_router
from tests.router_support import message, now_ms, outbox, put_agent

pytestmark = [pytest.mark.broker]

T = "tmall-flagship"
ASKS = "你好，订单3026111100001到哪了？"


async def surge_on(redis: Redis, keys: Keys, intents: list[str]) -> None:
    """The profile presence would store and switch on."""
    await redis.hset(keys.surge_profiles(T), "double11", json.dumps({"bot_first": intents}))
    await redis.hset(keys.surge_state(T), mapping={"active": "double11", "since_ms": now_ms()})


async def conv_field(redis: Redis, keys: Keys, conv: str, name: str) -> str:
    value = await redis.hget(keys.conversation(T, conv), name)
    return value.decode() if value else ""


async def profile_read(log_dir: Path, name: str) -> None:
    """Wait until the router has read the tenant's surge profile in force (its sweep does, right after start)."""

    async def logged() -> bool:
        text = (log_dir / f"{name}.log").read_text(encoding="utf-8", errors="replace")
        return '"surge_profile_in_force"' in text and '"profile": "double11"' in text

    await eventually(logged, 30, f"{name} read the surge profile")


async def routing_events(settings: ServiceSettings, topic: str, count: int) -> list[RoutingEvent]:
    return [m for _, m in await read_topic(settings.kafka_bootstrap, topic, count) if isinstance(m, RoutingEvent)]


async def test_bot_answer_goes_out_and_zhuanrengong_reaches_an_agent_with_the_original_arrival(
    settings: ServiceSettings, redis: Redis, tmp_path: Path
) -> None:
    keys = Keys(settings.key_prefix)
    await surge_on(redis, keys, ["order_status"])
    await put_agent(redis, keys, T, "lina", ["logistics"], chat=2)
    order = Order(tenant_id=T, order_id="3026111100001", customer_id="buyer-9001", status="out_for_delivery",
                  carrier="京东物流", tracking_number="JD0012345678901", eta="2026-11-12")  # fmt: skip
    orders = OrderServer(OrderBook([order]), free_port())
    await orders.start()
    producer = RecordProducer(settings)
    await producer.start()
    router, _ = await start_router(settings, tmp_path, "router-bot", extra={"SB_ORDER_LOOKUP_URL": orders.url})
    try:
        await profile_read(tmp_path, "router-bot")
        topics = producer.topics
        await producer.send(topics.inbound, "c1", message(T, "c1", "m1", ASKS, customer="buyer-9001"))
        [(key, reply)] = await read_topic(settings.kafka_bootstrap, topics.outbound, 1)
        assert isinstance(reply, OutboundMessage) and key == "c1"
        assert (reply.sender, reply.message_id, reply.customer_id) == ("bot", "bot-m1", "buyer-9001")
        assert "派送中" in reply.text and "JD0012345678901" in reply.text
        [answered] = await routing_events(settings, topics.routing, 1)
        assert answered.type == RoutingEventType.ROUTING_EVENT_ANSWERED_BY_BOT
        assert answered.bot_template == "order_status.zh" and answered.lookup["carrier"] == "京东物流"
        arrival = int(await conv_field(redis, keys, "c1", "enqueued_ms"))
        assert answered.enqueued_at.ToMilliseconds() == arrival

        await asyncio.sleep(0.5)
        await producer.send(topics.inbound, "c1", message(T, "c1", "m2", "我要转人工", customer="buyer-9001"))
        events = await routing_events(settings, topics.routing, 2)
        assigned = events[1]
        assert assigned.type == RoutingEventType.ROUTING_EVENT_ASSIGNED and assigned.agent_id == "lina"
        assert assigned.enqueued_at.ToMilliseconds() == arrival
        desk = await outbox(redis, keys, T, "lina")
        assert [e.message.message_id for e in desk] == ["m1", "bot-m1", "m2"]
        assert desk[1].message.attributes["sender"] == "bot"
    finally:
        await stop_router(router)
        await producer.stop()
        await orders.stop()


async def test_router_killed_mid_lookup_loses_nothing(settings: ServiceSettings, redis: Redis, tmp_path: Path) -> None:
    keys = Keys(settings.key_prefix)
    await surge_on(redis, keys, ["order_status"])
    await put_agent(redis, keys, T, "lina", ["logistics"], chat=2)

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(60)
        writer.close()

    hanging = await asyncio.start_server(hang, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{hanging.sockets[0].getsockname()[1]}"
    producer = RecordProducer(settings)
    await producer.start()
    first, _ = await start_router(settings, tmp_path, "router-1", extra={"SB_ORDER_LOOKUP_URL": url})
    second = None
    try:
        await profile_read(tmp_path, "router-1")
        await producer.send(producer.topics.inbound, "c1", message(T, "c1", "m1", ASKS, customer="buyer-9001"))

        async def held() -> bool:
            return await conv_field(redis, keys, "c1", "state") == "bot"

        await eventually(held, 30, "c1 held for the bot")
        arrival = int(await conv_field(redis, keys, "c1", "enqueued_ms"))
        first.kill()  # mid-lookup: the order system has not answered
        await first.wait()
        assert await conv_field(redis, keys, "c1", "state") == "bot"
        second, _ = await start_router(settings, tmp_path, "router-2", extra={"SB_ORDER_LOOKUP_URL": url})

        async def assigned() -> bool:
            return await conv_field(redis, keys, "c1", "state") == "assigned"

        await eventually(assigned, 30, "c1 routed after the router died")
        desk = await outbox(redis, keys, T, "lina")
        assert [e.message.message_id for e in desk] == ["m1"]
        assert desk[0].routing.agent_id == "lina"
        # Routed (a plan made on a stale snapshot is queued and drained at once: QUEUED, then ASSIGNED).
        events = await routing_events(settings, producer.topics.routing, 1)
        if events[0].type == RoutingEventType.ROUTING_EVENT_QUEUED:
            events = await routing_events(settings, producer.topics.routing, 2)
        assert events[-1].type == RoutingEventType.ROUTING_EVENT_ASSIGNED
        assert all(e.enqueued_at.ToMilliseconds() == arrival for e in events)
        # The sweep took the dead router's hold, or the redelivered message's lookup timed out on the new router.
        assert {"bot:deadline_passed", "bot:timeout"} & set(events[0].reasons)
        assert await redis.zcard(keys.bot_holds(T)) == 0
    finally:
        if second is not None:
            await stop_router(second)
        await producer.stop()
        hanging.close()
