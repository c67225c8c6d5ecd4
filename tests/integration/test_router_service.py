"""The router process on Kafka: inbound to desks, routing events with queue positions, presence records drain
queues, commands close, bad records go to the DLQ, SIGTERM exits cleanly."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis.asyncio import Redis

from switchboard.contracts import (
    AgentCommand,
    AgentCommandType,
    DeadLetter,
    RoutingEvent,
    RoutingEventType,
)
from switchboard.runtime.kafka import RecordProducer
from switchboard.runtime.settings import ServiceSettings
from switchboard.state.keys import Keys
from tests.helpers import eventually, read_topic
from tests.integration.router_procs import start_router, stop_router
from tests.redis_cluster import on_both_redis_backends
from tests.router_support import message, outbox, presence_record, put_agent, set_status

pytestmark = [pytest.mark.broker, on_both_redis_backends]

T = "tmall-flagship"


async def test_router_process_routes_queues_reacts_to_presence_and_closes(
    settings: ServiceSettings, redis: Redis, tmp_path: Path
) -> None:
    keys = Keys(settings.key_prefix)
    await put_agent(redis, keys, T, "lina", ["presales"], chat=1)
    await put_agent(redis, keys, T, "wei", ["presales"], chat=1, status="away")
    producer = RecordProducer(settings)
    await producer.start()
    router, _ = await start_router(settings, tmp_path, "router-1")
    try:
        topics = producer.topics
        await producer.send(topics.inbound, "c1", message(T, "c1", "m1", "这件衣服有XL码吗"))

        async def lina_has_c1() -> bool:
            return len(await outbox(redis, keys, T, "lina")) >= 1

        await eventually(lina_has_c1, 30, "c1 on lina's desk")
        # c2 first, then c3: a position is the queue as it stood when the conversation was queued, and two
        # records of one poll on different partitions may be decided in either order.
        await producer.send(topics.inbound, "c2", message(T, "c2", "m2", "颜色有哪些"))

        async def c2_queued() -> bool:
            return await redis.hget(keys.conversation(T, "c2"), "state") in (b"queued", "queued")

        await eventually(c2_queued, 30, "c2 queued")
        await producer.send_many(
            topics.inbound,
            [
                ("c3", message(T, "c3", "m3", "在吗")),
                ("c1", message(T, "c1", "m1b", "谢谢")),
                ("x1", message("no-such-shop", "x1", "mx")),
            ],
        )

        async def lina_has_both() -> bool:
            return len(await outbox(redis, keys, T, "lina")) >= 2

        await eventually(lina_has_both, 30, "lina's desk")
        desk = await outbox(redis, keys, T, "lina")
        assert [(e.conversation_id, e.message.message_id) for e in desk] == [("c1", "m1"), ("c1", "m1b")]

        routing = [m for _, m in await read_topic(settings.kafka_bootstrap, topics.routing, 4)]
        queued = [e for e in routing if isinstance(e, RoutingEvent) and e.type == RoutingEventType.ROUTING_EVENT_QUEUED]
        # A redelivered batch re-emits its decisions (at least once, docs/state.md "processed"): one per conversation.
        positions = {e.conversation_id: (e.queue_position, e.skill_group) for e in queued}
        assert sorted(positions) == ["c2", "c3"]
        # c2 waited alone; c3's position is its place in its group's queue as it stands (nothing has left it since):
        # behind c2 when both wait in one group with one priority, ahead of it when it ranks higher.
        assert positions["c2"][0] == 1
        position, group = positions["c3"]
        rank = await redis.zrank(keys.queue_channel(T, group, "chat"), "c3")
        assert rank is not None and position == rank + 1, (positions, rank)

        dead = [m for _, m in await read_topic(settings.kafka_bootstrap, topics.dlq, 1)]
        assert isinstance(dead[0], DeadLetter) and "no routing config" in dead[0].reason

        # Wei comes back: presence writes the hash and publishes the record; the router drains at once.
        await set_status(redis, keys, T, "wei", "available")
        await producer.send(topics.presence, f"{T}/wei", presence_record(T, "wei", "available", ["presales"]))

        async def wei_took_one() -> bool:
            return len(await outbox(redis, keys, T, "wei")) == 1

        await eventually(wei_took_one, 30, "wei assigned from the queue")

        close = AgentCommand(
            command_id="close-1",
            tenant_id=T,
            agent_id="lina",
            conversation_id="c1",
            type=AgentCommandType.AGENT_COMMAND_CLOSE,
            epoch=desk[0].epoch,
            wrap_up_code="resolved",
        )
        await producer.send(topics.commands, "c1", close)

        async def lina_took_the_last() -> bool:
            return len(await outbox(redis, keys, T, "lina")) == 4

        await eventually(lina_took_the_last, 30, "lina closed c1 and got the last waiting conversation")
        kinds = [e.type for e in await outbox(redis, keys, T, "lina")]
        assert kinds[2:] == [5, 2]  # CLOSED, then ASSIGNED
    finally:
        assert await stop_router(router) == 0
        await producer.stop()
