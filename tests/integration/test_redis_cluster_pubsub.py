"""Pub/sub on the cluster as docs/state.md ("What runs where") says it works.

The gateway holds one classic pattern subscription on whichever node; desk notifications published by scripts on
other nodes still reach it (PUBLISH is broadcast over the cluster bus). The chat adapter needs an honest subscriber
count, which on a cluster only a shard channel gives.
"""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from switchboard.contracts import DeskEvent, DeskEventType
from switchboard.runtime.redis_client import next_shard_message, prepare_pubsub
from switchboard.runtime.settings import ServiceSettings
from switchboard.state.keys import Keys
from switchboard.state.outbox import append_desk_event

pytestmark = [pytest.mark.broker, pytest.mark.parametrize("redis_backend", ["cluster"])]


def _node_port(redis: Redis, key: str) -> int:
    assert isinstance(redis, RedisCluster)
    return int(redis.get_node_from_key(key).port)


async def test_desk_notifications_of_every_node_reach_one_pattern_subscription(
    redis: Redis, settings: ServiceSettings
) -> None:
    keys = Keys(settings.key_prefix)
    await prepare_pubsub(redis)
    pubsub = redis.pubsub(ignore_subscribe_messages=True)
    await pubsub.psubscribe(keys.desk_notify_pattern())
    try:
        assert pubsub.connection is not None
        listening = int(pubsub.connection.port)
        tenants = [f"shop-{i}" for i in range(8)]
        elsewhere = [t for t in tenants if _node_port(redis, keys.desk_notify(t)) != listening]
        assert elsewhere, "some tenants' slots are on other nodes than the subscription's"
        for tenant in tenants:
            event = DeskEvent(tenant_id=tenant, agent_id="a1", type=DeskEventType.DESK_EVENT_STATUS)
            await append_desk_event(redis, keys, event)
        heard = set()
        async with asyncio.timeout(10):
            while len(heard) < len(tenants):
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is not None:
                    heard.add(keys.desk_notify_tenant(message["channel"].decode()))
        assert heard == set(tenants)
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]


async def test_only_a_shard_channel_counts_a_subscriber_on_another_node(
    redis: Redis, settings: ServiceSettings
) -> None:
    keys = Keys(settings.key_prefix)
    channel = keys.chat_customer_channel("shop-b", "c-1")
    await prepare_pubsub(redis)
    pubsub = redis.pubsub()
    await pubsub.ssubscribe(channel)
    try:
        # A classic PUBLISH sent to another node than the subscriber's answers 0 although the message goes out.
        owner = _node_port(redis, channel)
        assert isinstance(redis, RedisCluster)
        other = next(node for node in redis.get_primaries() if node.port != owner)
        assert await redis.execute_command("PUBLISH", channel, "classic", target_nodes=other) == 0
        assert await redis.spublish(channel, "sharded") == 1
        async with asyncio.timeout(10):
            while (message := await next_shard_message(pubsub, timeout=1.0)) is None:
                pass
        assert (message["type"], message["data"]) == ("smessage", b"sharded")
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]


async def test_a_shard_subscription_whose_last_channel_left_waits_instead_of_holding_the_loop(
    redis: Redis, settings: ServiceSettings
) -> None:
    """A chat replica's last customer left: its reader of shard channels must wait out its timeout, not return at
    once (a loop around it would hold the event loop, and the replica would ignore even SIGTERM)."""
    channel = Keys(settings.key_prefix).chat_customer_channel("shop-b", "c-gone")
    await prepare_pubsub(redis)
    pubsub = redis.pubsub()
    await pubsub.ssubscribe(channel)
    try:
        await pubsub.sunsubscribe(channel)
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        # Reads take the confirmations; after the unsubscribe's, no node holds a channel of it.
        async with asyncio.timeout(5):
            while pubsub.node_pubsub_mapping:
                assert await next_shard_message(pubsub, timeout=0.1) is None
        ticker = asyncio.create_task(tick())
        loop = asyncio.get_running_loop()
        started = loop.time()
        for _ in range(4):
            assert await next_shard_message(pubsub, timeout=0.1) is None
        ticker.cancel()
        assert loop.time() - started >= 0.35
        assert ticks >= 10, "the event loop went on while the reader waited"
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
