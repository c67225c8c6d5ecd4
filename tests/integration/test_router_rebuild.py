"""The router's rebuild from real topics into a real Redis (router/rebuild.py; docs/state.md "When Redis loses its
data", router), and the scripts' refusal to write while the router's state mark is missing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import OffsetAndMetadata
from redis.asyncio import Redis

from switchboard.contracts import Channel, DeskEventType, InboundMessage, RoutingEvent, RoutingEventType
from switchboard.router.engine import MemorySink, Router
from switchboard.router.rebuild import RouterRebuild, TopicReader
from switchboard.router.reload import ConfigStore
from switchboard.router.snapshot import StateLost, redis_guard
from switchboard.runtime.kafka import RecordProducer
from switchboard.runtime.settings import ServiceSettings
from switchboard.runtime.topics import Topics
from switchboard.state.keys import Keys
from switchboard.state.outbox import read_outbox
from tests.router_support import message, put_agent

pytestmark = [pytest.mark.broker]

T = "tmall-flagship"
REPO = Path(__file__).resolve().parents[2]
E = RoutingEventType


def _event(conv: str, kind: RoutingEventType.ValueType, epoch: int, agent: str = "", mid: str = "") -> RoutingEvent:
    e = RoutingEvent(
        tenant_id=T,
        conversation_id=conv,
        type=kind,
        epoch=epoch,
        agent_id=agent,
        skill_group="presales",
        channel=Channel.CHANNEL_CHAT,
        message_id=mid,
        priority=2,
    )
    e.at.GetCurrentTime()
    e.enqueued_at.GetCurrentTime()
    return e


async def _commit_inbound(settings: ServiceSettings) -> None:
    """The router group has handled everything on the inbound topic so far."""
    topic = Topics(settings.topic_prefix).inbound
    reader = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap, group_id=None)
    await reader.start()
    try:
        await reader.topics()
        tps = sorted(reader.assignment())
        ends = await reader.end_offsets(tps)
    finally:
        await reader.stop()
    assert tps
    group = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, group_id=f"{settings.topic_prefix}router", enable_auto_commit=False
    )
    await group.start()
    try:
        group.assign(tps)
        await group.commit({tp: OffsetAndMetadata(end, "") for tp, end in ends.items()})
    finally:
        await group.stop()


async def _record(settings: ServiceSettings) -> None:
    """c1 assigned to a1, c2 offered to a2, c3 closed; m4 of c1 not handled yet (after the committed offset)."""
    producer = RecordProducer(settings)
    await producer.start()
    try:
        inbound = [("c1", message(T, "c1", "m1")), ("c2", message(T, "c2", "m2")), ("c3", message(T, "c3", "m3"))]
        await producer.send_many(producer.topics.inbound, inbound)
        events = [
            _event("c1", E.ROUTING_EVENT_QUEUED, 0, mid="m1"),
            _event("c1", E.ROUTING_EVENT_ASSIGNED, 1, "a1"),
            _event("c2", E.ROUTING_EVENT_QUEUED, 0, mid="m2"),
            _event("c2", E.ROUTING_EVENT_OFFERED, 1, "a2"),
            _event("c3", E.ROUTING_EVENT_ASSIGNED, 1, "a1", mid="m3"),
            _event("c3", E.ROUTING_EVENT_CLOSED, 2, "a1"),
        ]
        await producer.send_many(producer.topics.routing, [(e.conversation_id, e) for e in events])
        await _commit_inbound(settings)
        await producer.send_many(producer.topics.inbound, [("c1", message(T, "c1", "m4"))])
    finally:
        await producer.stop()


async def test_rebuild_from_the_topics_gives_back_owners_queues_backlogs_and_is_idempotent(
    settings: ServiceSettings, redis: Redis
) -> None:
    keys = Keys(settings.key_prefix)
    for agent in ("a1", "a2"):
        await put_agent(redis, keys, T, agent, ["presales"], chat=2)
    await _record(settings)
    configs = ConfigStore(REPO / "config" / "routing")
    configs.poll()
    rebuild = RouterRebuild(redis, keys, configs, TopicReader(settings))
    for _ in range(2):  # a second run (a rebuild interrupted and run again) changes nothing twice
        await rebuild(T)
        c1 = await redis.hgetall(keys.conversation(T, "c1"))
        # Assigned to its owner again under a new epoch: under one epoch a desk gets every message once.
        assert (c1[b"state"], c1[b"owner"], c1[b"epoch"]) == (b"assigned", b"a1", b"2")
        backlog = await redis.lrange(keys.conversation_backlog(T, "c1"), 0, -1)
        assert [InboundMessage.FromString(raw).message_id for raw in backlog] == ["m1"]
        assert await redis.smembers(keys.agent_conversations(T, "a1")) == {b"c1"}
        assert await redis.hget(keys.agent(T, "a1"), "used:chat") == b"1"
        c2 = await redis.hgetall(keys.conversation(T, "c2"))
        assert (c2[b"state"], c2[b"owner"], c2[b"offer_agent"], c2[b"epoch"]) == (b"queued", b"", b"", b"1")
        assert await redis.zrange(keys.queue_channel(T, "presales", "chat"), 0, -1) == [b"c2"]
        assert int(await redis.hget(keys.agent(T, "a2"), "used:chat") or 0) == 0
        c3 = await redis.hgetall(keys.conversation(T, "c3"))
        assert (c3[b"state"], c3[b"epoch"], c3[b"last_owner"]) == (b"closed", b"2", b"a1")
        assert not await redis.exists(keys.conversation_backlog(T, "c3"))
        assert await redis.exists(keys.processed(T, "router", "m1"))
        assert not await redis.exists(keys.processed(T, "router", "m4"))  # consumed again normally
    desk = await read_outbox(redis, keys, T, "a1", 0)
    assigned = [e for e in desk if e.type == DeskEventType.DESK_EVENT_ASSIGNED]
    assert [(e.conversation_id, e.epoch, e.message.message_id) for e in assigned] == [("c1", 2, "m1")]
    # The re-assignment waits in the unsent set for the routing topic (the router publishes it after the rebuild).
    unsent = [json.loads(raw) for raw in await redis.zrange(keys.routing_unsent(T), 0, -1)]
    assert [(d["type"], d["conv"], d["agent"], d["epoch"]) for batch in unsent for d in batch] == [
        ("assigned", "c1", "a1", 2)
    ]


async def test_no_script_writes_while_the_mark_is_missing_and_the_next_batch_rebuilds_first(
    settings: ServiceSettings, redis: Redis
) -> None:
    keys = Keys(settings.key_prefix)
    await put_agent(redis, keys, T, "a1", ["presales", "general"], chat=2)
    configs = ConfigStore(REPO / "config" / "routing")
    configs.poll()
    sink = MemorySink()
    rebuild = RouterRebuild(redis, keys, configs, TopicReader(settings))
    router = Router(redis, keys, configs, sink, rebuild=rebuild)
    await router.handle_inbound([message(T, "c1", "m1")])  # first start: nothing to rebuild, mark set
    mark = keys.state_mark(T, "router")
    assert await redis.exists(mark)
    await redis.delete(mark)
    config = configs.get(T)
    assert config is not None
    ctx = router.context
    ks = ctx.key_set(config).add(keys.processed(T, "router", "m2")).conversation("c2")
    request = '{"mid":"m2","conv":"c2","ch":"chat","customer":"","owner":"","live":false}'
    with pytest.raises(StateLost):
        async with redis_guard():
            await ctx.scripts.inbound(redis, ks.list(), [ctx.ctx(config, ctx.clock()), request, b""])
    assert not await redis.exists(keys.conversation(T, "c2"))
    assert not await redis.exists(keys.processed(T, "router", "m2"))
    await router.handle_inbound([message(T, "c2", "m2")])  # ready() rebuilds first, then routes
    assert await redis.exists(mark)
    assert (await redis.hget(keys.conversation(T, "c2"), "state")) in (b"assigned", b"offered", b"queued")
