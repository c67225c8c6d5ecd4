"""Bot-first answers in the router, against a real Redis and a real order service over HTTP: the answer and its
event, 转人工 routed with the original arrival, a dead or hanging order system, the breaker, a lost router."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from switchboard.contracts import DeskEventType, RoutingEvent, RoutingEventType
from switchboard.router.engine import MemorySink, Router
from switchboard.router.reload import ConfigStore
from switchboard.router.settings import BotSettings
from switchboard.state.keys import Keys
from switchboard_tools.orders import Order, OrderBook, OrderServer
from switchboard_tools.stack.procs import free_port
from tests.router_support import message, now_ms, outbox, put_agent

pytestmark = [pytest.mark.broker]

T = "tmall-flagship"
ORDER = Order(
    tenant_id=T,
    order_id="3026111100001",
    customer_id="buyer-9001",
    status="shipped",
    carrier="顺丰速运",
    tracking_number="SF1500000000001",
    eta="2026-11-13",
)
ASKS = "订单 3026111100001 到哪了"
# The flagship's bot.lookup_timeout_s; a conversation is routed within it plus this margin.
TIMEOUT_S = 2.0
MARGIN_S = 0.75


@dataclass
class BotEnv:
    redis: Redis
    keys: Keys
    store: ConfigStore

    def router(self, url: str, *, failures: int = 5, cooldown_s: float = 30.0) -> Router:
        bot = BotSettings(order_lookup_url=url, breaker_failures=failures, breaker_cooldown_s=cooldown_s)
        return Router(self.redis, self.keys, self.store, MemorySink(), instance="test", bot=bot)

    async def surge(self, intents: list[str]) -> None:
        """Switch on a profile with these bot intents, as presence stores it."""
        await self.redis.hset(self.keys.surge_profiles(T), "double11", json.dumps({"bot_first": intents}))
        await self.redis.hset(self.keys.surge_state(T), mapping={"active": "double11", "since_ms": now_ms()})
        await self.store.surge.refresh(self.redis, self.keys, T)  # as the router's sweep does

    async def conv(self, conv: str) -> dict[str, str]:
        raw = await self.redis.hgetall(self.keys.conversation(T, conv))
        return {k.decode(): v.decode() for k, v in raw.items()}


def sink_of(router: Router) -> MemorySink:
    sink = router.context.sink
    assert isinstance(sink, MemorySink)
    return sink


def events(router: Router, kind: str) -> list[RoutingEvent]:
    wanted = getattr(RoutingEventType, f"ROUTING_EVENT_{kind.upper()}")
    return [e for e in sink_of(router).events if e.type == wanted]


async def routed(router: Router, conv: str, timeout: float) -> RoutingEvent:
    """The conversation's ASSIGNED or QUEUED event, waiting for it up to `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for e in sink_of(router).events:
            if e.conversation_id == conv and e.type in (
                RoutingEventType.ROUTING_EVENT_ASSIGNED,
                RoutingEventType.ROUTING_EVENT_QUEUED,
            ):
                return e
        await asyncio.sleep(0.02)
    raise AssertionError(f"{conv} not routed within {timeout}s")


@pytest.fixture
async def env(redis: Redis, prefix: str, repo_root: Path) -> AsyncIterator[BotEnv]:
    store = ConfigStore(repo_root / "config" / "routing")
    store.poll()
    yield BotEnv(redis, Keys(prefix.rstrip(".")), store)


@pytest.fixture
async def orders() -> AsyncIterator[OrderServer]:
    server = OrderServer(OrderBook([ORDER]), free_port())
    await server.start()
    yield server
    await server.stop()


async def hanging_server() -> tuple[asyncio.Server, str]:
    """An order system that accepts connections and never answers."""

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(60)
        writer.close()

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


async def test_bot_answers_from_the_order_service_then_zhuanrengong_reaches_an_agent_with_the_original_arrival(
    env: BotEnv, orders: OrderServer
) -> None:
    await env.surge(["order_status", "shipping_time"])
    await put_agent(env.redis, env.keys, T, "lina", ["logistics"], chat=2)
    router = env.router(orders.url)
    assert await router.handle_inbound([message(T, "c1", "m1", ASKS, customer="buyer-9001")]) == []
    held = await env.conv("c1")
    assert held["state"] in ("bot", "bot_answered")
    arrival = int(held["enqueued_ms"])
    await router.bot.idle()

    [reply] = sink_of(router).replies
    assert (reply.sender, reply.agent_id, reply.conversation_id) == ("bot", "", "c1")
    assert "订单 3026111100001 当前状态：已发货" in reply.text and "SF1500000000001" in reply.text
    [answered] = events(router, "answered_by_bot")
    assert answered.bot_template == "order_status.zh"
    assert answered.lookup["tracking_number"] == "SF1500000000001" and answered.lookup["status"] == "shipped"
    assert (await env.conv("c1"))["state"] == "bot_answered"
    assert await outbox(env.redis, env.keys, T, "lina") == []  # no agent's slot spent

    await asyncio.sleep(0.3)
    assert await router.handle_inbound([message(T, "c1", "m2", "转人工", customer="buyer-9001")]) == []
    [assigned] = events(router, "assigned")
    assert (assigned.conversation_id, assigned.agent_id, assigned.skill_group) == ("c1", "lina", "logistics")
    assert assigned.enqueued_at.ToMilliseconds() == arrival
    assert "bot:customer_wrote" in assigned.reasons
    desk = await outbox(env.redis, env.keys, T, "lina")
    thread = [(DeskEventType.Name(e.type), e.message.message_id, e.message.attributes.get("sender", "")) for e in desk]
    assert thread == [
        ("DESK_EVENT_ASSIGNED", "m1", ""),
        ("DESK_EVENT_MESSAGE", "bot-m1", "bot"),
        ("DESK_EVENT_MESSAGE", "m2", ""),
    ]
    assert desk[1].message.text == reply.text
    await router.bot.close()


async def test_no_bot_without_the_profile_or_when_the_first_message_asks_for_a_person(
    env: BotEnv, orders: OrderServer
) -> None:
    await put_agent(env.redis, env.keys, T, "lina", ["logistics"], chat=3)
    router = env.router(orders.url)
    await router.handle_inbound([message(T, "c1", "m1", ASKS, customer="buyer-9001")])
    await env.surge(["order_status"])
    await router.handle_inbound([message(T, "c2", "m2", ASKS + "？转人工", customer="buyer-9001")])
    await router.handle_inbound([message(T, "c3", "m3", "这个尺码合适吗", customer="buyer-9003")])
    await router.bot.idle()
    assert sink_of(router).replies == []
    assert events(router, "answered_by_bot") == []
    assert {e.conversation_id for e in events(router, "assigned")} == {"c1", "c2"}
    await router.bot.close()


@pytest.mark.parametrize("failure", ["hanging", "refused"])
async def test_order_service_down_routes_to_an_agent_within_the_lookup_timeout(env: BotEnv, failure: str) -> None:
    await env.surge(["order_status"])
    await put_agent(env.redis, env.keys, T, "lina", ["logistics"], chat=2)
    hanging, url = await hanging_server() if failure == "hanging" else (None, f"http://127.0.0.1:{free_port()}")
    router = env.router(url)
    try:
        started = time.monotonic()
        await router.handle_inbound([message(T, "c1", "m1", ASKS, customer="buyer-9001")])
        arrival = int((await env.conv("c1"))["enqueued_ms"])
        event = await routed(router, "c1", TIMEOUT_S + MARGIN_S)
        took = time.monotonic() - started
        assert event.type == RoutingEventType.ROUTING_EVENT_ASSIGNED and event.agent_id == "lina"
        assert event.enqueued_at.ToMilliseconds() == arrival
        expected = "bot:timeout" if failure == "hanging" else "bot:failed"
        assert expected in event.reasons
        if failure == "hanging":
            assert took >= TIMEOUT_S - 0.1  # it did wait for the order system, no longer than the timeout
        assert sink_of(router).replies == []
        assert await env.redis.zcard(env.keys.bot_holds(T)) == 0
    finally:
        await router.bot.close()
        if hanging is not None:
            hanging.close()


async def test_breaker_opens_after_repeated_failures_and_closes_after_a_good_trial(env: BotEnv) -> None:
    await env.surge(["order_status"])
    await put_agent(env.redis, env.keys, T, "lina", ["logistics"], chat=10)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    router = env.router(url, failures=2, cooldown_s=1.5)

    def state() -> float | None:
        return REGISTRY.get_sample_value("sb_bot_breaker_state", {"order_system": url})

    for i in (1, 2):
        await router.handle_inbound([message(T, f"c{i}", f"m{i}", ASKS, customer="buyer-9001")])
        assert "bot:failed" in (await routed(router, f"c{i}", TIMEOUT_S + MARGIN_S)).reasons
    assert state() == 2  # open
    # Open: the order system is not even tried, the conversation is routed at once.
    started = time.monotonic()
    await router.handle_inbound([message(T, "c3", "m3", ASKS, customer="buyer-9001")])
    assert "bot:breaker_open" in (await routed(router, "c3", 1.0)).reasons
    assert time.monotonic() - started < 1.0

    server = OrderServer(OrderBook([ORDER]), port)
    await server.start()
    try:
        await asyncio.sleep(1.6)  # the cool-down: one trial lookup goes out, it succeeds, the breaker closes
        await router.handle_inbound([message(T, "c4", "m4", ASKS, customer="buyer-9001")])
        await router.bot.idle()
        assert [e.conversation_id for e in events(router, "answered_by_bot")] == ["c4"]
        assert state() == 0
    finally:
        await router.bot.close()
        await server.stop()


async def test_a_hold_whose_router_died_is_routed_by_another_routers_sweep(env: BotEnv) -> None:
    await env.surge(["order_status"])
    await put_agent(env.redis, env.keys, T, "lina", ["logistics"], chat=2)
    hanging, url = await hanging_server()
    first, second = env.router(url), env.router(url)
    try:
        await first.handle_inbound([message(T, "c1", "m1", ASKS, customer="buyer-9001")])
        held = await env.conv("c1")
        await first.bot.close()  # the router dies mid-lookup: its task is gone, the hold stays
        assert (await env.conv("c1"))["state"] == "bot"
        await second.upkeep.sweep()
        assert events(second, "assigned") == []  # not before the deadline
        await asyncio.sleep(max(0.0, (int(held["bot_deadline_ms"]) - now_ms()) / 1000) + 0.05)
        await second.upkeep.sweep()
        [assigned] = events(second, "assigned")
        assert assigned.agent_id == "lina" and "bot:deadline_passed" in assigned.reasons
        assert assigned.enqueued_at.ToMilliseconds() == int(held["enqueued_ms"])
        assert [e.message.message_id for e in await outbox(env.redis, env.keys, T, "lina")] == ["m1"]
    finally:
        await second.bot.close()
        hanging.close()
