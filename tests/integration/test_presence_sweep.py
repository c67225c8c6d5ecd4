"""The presence sweep on real Redis and Kafka: lost heartbeats, wrap-up timers, two replicas, republishing."""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from switchboard.contracts import AgentPresence, AgentStatus
from switchboard.presence.audit import AuditLog
from switchboard.presence.control import SurgeControl
from switchboard.presence.sweep import Sweeper
from switchboard.runtime.kafka import RecordProducer
from switchboard.runtime.settings import ServiceSettings
from switchboard.state.agent_model import Status
from switchboard.state.agents import HeartbeatResult, PresenceStore
from switchboard.state.agents_lua import PRESENCE_STATUS_LUA
from switchboard.state.keys import Keys
from switchboard.state.roster import load_roster
from tests.helpers import eventually, read_topic
from tests.redis_cluster import on_both_redis_backends

pytestmark = [pytest.mark.broker, on_both_redis_backends]

GRACE_S = 0.6
INTERVAL_S = 0.1


def make_replica(redis: Redis, settings: ServiceSettings, producer: RecordProducer) -> tuple[PresenceStore, Sweeper]:
    """One presence replica's store and sweeper (replicas share Redis and the topic, nothing else)."""
    store = PresenceStore(redis, Keys(settings.key_prefix), producer, wrap_up_s=0.3)
    control = SurgeControl(store, AuditLog(redis, store.keys))
    sweeper = Sweeper(store, control, grace_s=GRACE_S, interval_s=INTERVAL_S, republish_after_s=0.5)
    return store, sweeper


async def presence_records(settings: ServiceSettings, count: int) -> list[tuple[str, AgentPresence]]:
    found = await read_topic(settings.kafka_bootstrap, settings.topic_prefix + "sb.presence.v1", count)
    return [(k, m) for k, m in found if isinstance(m, AgentPresence)]


async def test_silent_agent_goes_offline_within_grace_and_sweep(
    redis: Redis, settings: ServiceSettings, producer: RecordProducer
) -> None:
    store, sweeper = make_replica(redis, settings, producer)
    await store.load_roster(load_roster())
    lina = await store.login("shop-a", "a-lina")
    wei = await store.login("shop-a", "a-wei")
    task = asyncio.create_task(sweeper.run())
    try:
        silent_since = time.monotonic()
        # Wei keeps beating through a few short gaps (a phone changing cells); Lina goes silent.
        for _ in range(8):
            assert await store.heartbeat("shop-a", "a-wei", wei) is HeartbeatResult.OK
            await asyncio.sleep(GRACE_S / 3)

        async def lina_offline() -> bool:
            agent = await store.get_agent("shop-a", "a-lina")
            return agent is not None and agent.status is Status.OFFLINE

        await eventually(lina_offline, timeout=GRACE_S + 5 * INTERVAL_S + 2, what="silent agent offline")
        assert time.monotonic() - silent_since >= GRACE_S
        wei_state = await store.get_agent("shop-a", "a-wei")
        assert wei_state is not None
        assert wei_state.status is Status.AVAILABLE
    finally:
        sweeper.stop()
        await task
    assert await store.heartbeat("shop-a", "a-lina", lina) is HeartbeatResult.OFFLINE
    # 8 roster records, 2 logins, 1 offline
    records = await presence_records(settings, 11)
    offline = [m for k, m in records if k == "shop-a/a-lina" and m.status == AgentStatus.AGENT_STATUS_OFFLINE]
    assert offline[-1].changed_by == "heartbeat_sweep"
    assert offline[-1].session_epoch == lina


async def test_wrap_up_returns_to_available(redis: Redis, settings: ServiceSettings, producer: RecordProducer) -> None:
    store, sweeper = make_replica(redis, settings, producer)
    await store.load_roster(load_roster())
    epoch = await store.login("shop-b", "b-hao")
    state = await store.set_status("shop-b", "b-hao", Status.WRAP_UP, "agent", session_epoch=epoch, wrap_up_s=0.3)
    assert state.status is Status.WRAP_UP
    assert state.wrap_up_until_ms > 0
    task = asyncio.create_task(sweeper.run())
    try:

        async def available_again() -> bool:
            await store.heartbeat("shop-b", "b-hao", epoch)
            agent = await store.get_agent("shop-b", "b-hao")
            return agent is not None and agent.status is Status.AVAILABLE

        await eventually(available_again, timeout=5, what="wrap-up over")
    finally:
        sweeper.stop()
        await task
    records = await presence_records(settings, 8 + 3)
    hao = [m for k, m in records if k == "shop-b/b-hao"]
    assert [m.status for m in hao[-2:]] == [AgentStatus.AGENT_STATUS_WRAP_UP, AgentStatus.AGENT_STATUS_AVAILABLE]
    assert hao[-1].changed_by == "wrap_up_timer"


async def test_two_replicas_publish_each_offline_once(
    redis: Redis, settings: ServiceSettings, producer: RecordProducer, kafka_bootstrap: str
) -> None:
    store_a, sweeper_a = make_replica(redis, settings, producer)
    other = RecordProducer(settings)
    await other.start()
    try:
        store_b, sweeper_b = make_replica(redis, settings, other)
        await store_a.load_roster(load_roster())
        agents = ["a-lina", "a-wei", "a-min", "a-emma", "a-jun"]
        for agent in agents:
            await store_a.login("shop-a", agent)
        # Both replicas sweep the same tenant at the same moments, many times over.
        tasks = [asyncio.create_task(s.run()) for s in (sweeper_a, sweeper_b)]
        try:

            async def all_offline() -> bool:
                states = await store_b.list_agents("shop-a")
                return all(s.status is Status.OFFLINE for s in states)

            await eventually(all_offline, timeout=GRACE_S + 3, what="all swept")
            # a few more sweeps of both replicas, which must find nothing left to do
            await asyncio.sleep(5 * INTERVAL_S)
        finally:
            sweeper_a.stop()
            sweeper_b.stop()
            await asyncio.gather(*tasks)
    finally:
        await other.stop()
    records = await presence_records(settings, 8 + 5 + 5)
    offline = [k for k, m in records if m.changed_by == "heartbeat_sweep"]
    assert sorted(offline) == sorted(f"shop-a/{a}" for a in agents)
    # nothing beyond the expected 18 records: read again with a larger count must time out short of it
    with pytest.raises(AssertionError):
        await read_topic(kafka_bootstrap, settings.topic_prefix + "sb.presence.v1", 19, timeout=1.5)


async def test_unacked_change_is_republished(redis: Redis, settings: ServiceSettings, producer: RecordProducer) -> None:
    store, sweeper = make_replica(redis, settings, producer)
    await store.load_roster(load_roster())
    # A change whose record never made it (the replica died before sending): the agent stays pending.
    await redis.hset(store.keys.agent("shop-a", "a-jun"), "display_name", "Jun (night shift)")
    await redis.zadd(store.keys.presence_pending("shop-a"), {"a-jun": store.now_ms() - 60_000})
    await sweeper.sweep_once()
    records = await presence_records(settings, 9)
    assert any(k == "shop-a/a-jun" and m.display_name == "Jun (night shift)" for k, m in records)
    assert await redis.zcard(store.keys.presence_pending("shop-a")) == 0


async def test_broken_entries_do_not_stall_the_sweep(
    redis: Redis, settings: ServiceSettings, producer: RecordProducer
) -> None:
    store = PresenceStore(redis, Keys(settings.key_prefix), producer)
    sweeper = Sweeper(store, SurgeControl(store, AuditLog(redis, store.keys)), grace_s=0, interval_s=1)
    await store.load_roster(load_roster())
    await store.login("shop-a", "a-lina")
    await store.login("shop-a", "a-wei")
    # a hash deleted by hand, and a heartbeat field edited into garbage
    await redis.zadd(store.keys.heartbeats("shop-a"), {"ghost": 0})
    await redis.hset(store.keys.agent("shop-a", "a-wei"), "last_heartbeat_ms", "yesterday")
    await sweeper.sweep_once()
    assert await redis.zscore(store.keys.heartbeats("shop-a"), "ghost") is None
    for agent in ("a-lina", "a-wei"):
        state = await store.get_agent("shop-a", agent)
        assert state is not None
        assert state.status is Status.OFFLINE


async def test_status_set_by_another_services_script_is_published_whole(
    redis: Redis, settings: ServiceSettings, producer: RecordProducer
) -> None:
    """The router sets `away` inside its own script with PRESENCE_STATUS_LUA; presence publishes the full state."""
    store, sweeper = make_replica(redis, settings, producer)
    await store.load_roster(load_roster())
    await store.login("shop-b", "b-sara")
    router_script = redis.register_script(
        PRESENCE_STATUS_LUA
        + "\nreturn presence_set_status(KEYS[1], KEYS[2], ARGV[1], 'away', ARGV[2], 'router', 'missed 3 offers')\n"
    )
    old = store.now_ms() - 60_000  # as if the router's publish call never came
    await router_script(
        keys=[store.keys.agent("shop-b", "b-sara"), store.keys.presence_pending("shop-b")], args=["b-sara", old]
    )
    await sweeper.sweep_once()
    records = await presence_records(settings, 8 + 1 + 1)
    sara = [m for k, m in records if k == "shop-b/b-sara"]
    assert sara[-1].status == AgentStatus.AGENT_STATUS_AWAY
    assert sara[-1].changed_by == "router"
    assert list(sara[-1].skill_groups) == ["cross_border", "logistics"]  # the whole state, not a partial record
    assert sara[-1].presence_version > sara[-2].presence_version


async def test_one_out_of_bounds_value_never_stops_the_sweep(
    redis: Redis, settings: ServiceSettings, producer: RecordProducer
) -> None:
    # A capacity no record can carry (the 41865718795, written before the API bounded it, or by hand)
    # and an infinite multiplier: both agents are skipped and counted; every other agent still goes offline.
    store, sweeper = make_replica(redis, settings, producer)
    await store.load_roster(load_roster())
    for agent in ("a-lina", "a-wei", "a-min"):
        await store.login("shop-a", agent)
    await redis.hset(store.keys.agent("shop-a", "a-lina"), "cap:chat", "41865718795")
    await redis.hset(store.keys.agent("shop-a", "a-wei"), "multiplier", "25.0")
    skipped_before = _sample("sb_presence_records_skipped_total")
    task = asyncio.create_task(sweeper.run())
    try:

        async def all_offline() -> bool:
            agents = await store.get_agents("shop-a", ["a-lina", "a-wei", "a-min"])
            return all(a is not None and a.status is Status.OFFLINE for a in agents)

        await eventually(all_offline, timeout=GRACE_S + 10 * INTERVAL_S + 3, what="every silent agent offline")
        await asyncio.sleep(3 * INTERVAL_S)
        assert sweeper.healthy
    finally:
        sweeper.stop()
        await task
    assert _sample("sb_presence_records_skipped_total") >= skipped_before + 2
    records = await presence_records(settings, 8 + 3 + 1)
    offline = {k for k, m in records if m.changed_by == "heartbeat_sweep"}
    assert "shop-a/a-min" in offline
    assert not {"shop-a/a-lina", "shop-a/a-wei"} & offline
    # the bad values stay visible to an operator, who repairs them; then the records go out
    lina = await store.get_agent("shop-a", "a-lina")
    assert lina is not None and lina.out_of_bounds() == ["cap:chat=41865718795"]
    await store.update_profile("shop-a", "a-lina", capacity={"chat": 5})
    repaired = [m for k, m in await presence_records(settings, 8 + 3 + 2) if k == "shop-a/a-lina"]
    assert repaired[-1].status == AgentStatus.AGENT_STATUS_OFFLINE
    assert {c.slots for c in repaired[-1].capacity} >= {5}


def _sample(name: str) -> float:
    value = REGISTRY.get_sample_value(name)
    return value or 0.0
