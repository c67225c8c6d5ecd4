"""Queue stats of the agent's groups reach its desktop as `queue_stats` frames, per tenant, as the queues change."""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from switchboard.gateway.board_stats import BoardFigures, RoutingTally, routing_facts
from switchboard.gateway.queue_stats import read_group_boards
from switchboard.gateway.settings import GatewaySettings
from switchboard.runtime.kafka import RecordProducer
from switchboard.runtime.settings import ServiceSettings
from switchboard.state.keys import Keys
from switchboard.state.roster import load_roster
from tests.integration.gateway_support import Desk, gateway_settings, load_agents, running_gateway, token
from tests.redis_cluster import on_both_redis_backends

pytestmark = [pytest.mark.broker, on_both_redis_backends]


@pytest.fixture
async def gs(settings: ServiceSettings, redis: Redis) -> AsyncIterator[GatewaySettings]:
    """Gateway settings with the dev roster loaded and stats every 0.2 s."""
    values = gateway_settings(settings, queue_stats_interval_s=0.2)
    producer = RecordProducer(values)
    await producer.start()
    await load_agents(values, redis, producer)
    await producer.stop()
    yield values


async def enqueue(redis: Redis, keys: Keys, tenant: str, group: str, channel: str, conv: str, waited_s: int) -> None:
    """Queue a conversation as the router does: its hash with `enqueued_ms`, and the channel queue of its group."""
    enqueued = int(time.time() * 1000) - waited_s * 1000
    await redis.hset(  # type: ignore[misc]
        keys.conversation(tenant, conv),
        mapping={"state": "queued", "group": group, "channel": channel, "enqueued_ms": enqueued},
    )
    await redis.zadd(keys.queue_channel(tenant, group, channel), {conv: enqueued})


_LATEST: weakref.WeakKeyDictionary[Desk, dict[str, dict[str, Any]]] = weakref.WeakKeyDictionary()


async def stats(desk: Desk, group: str, wanted: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The desktop's latest queue_stats of `group` once it is what the test waits for.

    Frames are sent when figures change, so one read while waiting for another group is remembered here.
    """
    latest = _LATEST.setdefault(desk, {})
    try:
        async with asyncio.timeout(10):
            while group not in latest or not wanted(latest[group]):
                frame = await desk.frame()
                if frame["type"] == "queue_stats":
                    latest[frame["skill_group"]] = frame
    except TimeoutError:
        raise AssertionError(f"no such queue_stats frame of {group}; latest {latest.get(group)}") from None
    return latest[group]


async def test_an_agent_sees_the_queues_of_its_groups_and_only_its_own_shops(gs: GatewaySettings, redis: Redis) -> None:
    keys = Keys(gs.key_prefix)
    await enqueue(redis, keys, "shop-a", "presales", "chat", "c-1", waited_s=42)
    await enqueue(redis, keys, "shop-a", "presales", "email", "c-2", waited_s=5)
    async with running_gateway(gs) as gw:
        lina = await Desk.open(gw.url, token("shop-a", "a-lina"))
        first = await stats(lina, "presales", lambda f: True)
        assert "seq" not in first  # ephemeral: not numbered, not acked
        assert first["waiting"] == 2
        assert first["waiting_by_channel"] == {"chat": 1, "email": 1, "phone": 0}
        assert 42 <= first["oldest_wait_s"] < 60
        assert first["available_agents"] == 1  # a-lina; a-emma and a-jun are not logged in

        # Another presales agent logs in and a customer joins the queue: both desktops hear of it.
        emma = await Desk.open(gw.url, token("shop-a", "a-emma"))
        await enqueue(redis, keys, "shop-a", "presales", "chat", "c-3", waited_s=0)
        grown = await stats(lina, "presales", lambda f: f["waiting"] == 3 and f["available_agents"] == 2)
        assert grown["waiting_by_channel"]["chat"] == 2
        assert (await stats(emma, "presales", lambda f: f["waiting"] == 3))["available_agents"] == 2
        orders = await stats(lina, "orders", lambda f: True)
        assert orders["waiting"] == 0 and orders["oldest_wait_s"] == 0

        # Shop B's presales group has the same name and an empty queue: shop A's customers never show there.
        hao = await Desk.open(gw.url, token("shop-b", "b-hao"))
        theirs = await stats(hao, "presales", lambda f: True)
        assert theirs["waiting"] == 0 and theirs["available_agents"] == 1
        for desk in (lina, emma, hao):
            await desk.close()


async def test_the_board_reads_a_group_like_the_desktops_plus_its_agents_and_occupancy(
    gs: GatewaySettings, redis: Redis
) -> None:
    keys = Keys(gs.key_prefix)
    await enqueue(redis, keys, "shop-a", "presales", "chat", "c-1", waited_s=42)
    await enqueue(redis, keys, "shop-a", "presales", "email", "c-2", waited_s=5)
    await enqueue(redis, keys, "shop-b", "presales", "chat", "c-b", waited_s=99)
    async with running_gateway(gs) as gw:
        await Desk.open(gw.url, token("shop-a", "a-lina"))  # available, chat 5 / email 10 / phone 1
        await redis.hset(keys.agent("shop-a", "a-lina"), "used:chat", 2)  # type: ignore[misc]
        boards = await read_group_boards(redis, keys, [("shop-a", "presales")], int(time.time() * 1000), head=10)
    board = boards[("shop-a", "presales")]
    assert board.queue.waiting == {"chat": 1, "email": 1, "phone": 0}, "shop-b's queue is not shop-a's"
    assert 42 <= board.queue.oldest_wait_s < 60
    assert board.agents_by_status["available"] == 1
    assert board.agents_by_status["offline"] == 2  # a-emma and a-jun never logged in
    assert (board.used_slots, board.slots) == (2, 16) and board.occupancy == 0.125


def _gauge(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


async def test_the_board_and_the_queue_gauges_show_the_same_figures_per_channel(
    gs: GatewaySettings, redis: Redis
) -> None:
    keys = Keys(gs.key_prefix)
    await enqueue(redis, keys, "shop-a", "presales", "chat", "c-1", waited_s=42)
    await enqueue(redis, keys, "shop-a", "presales", "chat", "c-2", waited_s=7)
    await enqueue(redis, keys, "shop-a", "presales", "email", "c-3", waited_s=300)
    # A group no routing config or roster names (a decision of an older config, say): exported as "none".
    await enqueue(redis, keys, "shop-a", "retired-group", "phone", "c-4", waited_s=12)
    figures = BoardFigures(redis, keys, RoutingTally(60), sample_s=1, history_s=60, head=gs.queue_stats_head)
    figures.know_roster(load_roster(gs.agents_file))
    figures.know_routing(routing_facts(gs.routing_config_dir))
    figures.groups["shop-a"].add("retired-group")
    await figures.sample(int(time.time() * 1000))
    row = next(g for g in figures.tenant_view("shop-a", 0)["groups"] if g["skill_group"] == "presales")
    assert row["waiting_by_channel"] == {"chat": 2, "email": 1, "phone": 0}
    for channel in ("chat", "email", "phone"):
        labels = {"tenant": "shop-a", "group": "presales", "channel": channel}
        assert _gauge("sb_queue_waiting", **labels) == row["waiting_by_channel"][channel]
        assert _gauge("sb_queue_oldest_wait_seconds", **labels) == row["oldest_wait_by_channel"][channel]
    assert 42 <= row["oldest_wait_by_channel"]["chat"] < 60 and 300 <= row["oldest_wait_by_channel"]["email"] < 320
    assert row["oldest_wait_s"] == row["oldest_wait_by_channel"]["email"]
    assert _gauge("sb_occupancy", tenant="shop-a", group="presales") == row["occupancy"]
    for status, count in row["agents_by_status"].items():
        assert _gauge("sb_agents", tenant="shop-a", group="presales", status=status) == count
    assert _gauge("sb_service_level_target_seconds", tenant="shop-a", group="presales") == row["service_level_target_s"]
    assert _gauge("sb_queue_waiting", tenant="shop-a", group="none", channel="phone") == 1
    assert _gauge("sb_queue_waiting", tenant="shop-a", group="retired-group", channel="phone") is None
