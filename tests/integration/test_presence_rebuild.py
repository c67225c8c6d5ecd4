"""Redis SIGKILLed and restarted empty under a running presence: presence rebuilds its agents from the compacted
presence topic and the roster (docs/state.md, "When Redis loses its data"), so a desk's session epoch, status and an
operator's live change survive, and a heartbeat of the old session is accepted again without a new login.

This test runs its own Redis (the shared one is never killed); Kafka is the shared broker.
"""

from __future__ import annotations

import asyncio
import signal
import time

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from switchboard.runtime.kafka import RecordProducer
from switchboard.runtime.settings import ServiceSettings
from switchboard.state.agent_model import Status, text
from switchboard.state.agents import HeartbeatResult, PresenceStore
from switchboard.state.keys import Keys
from switchboard.state.roster import load_roster
from switchboard_tools.stack.procs import free_port
from switchboard_tools.stack.redis import LocalRedis
from tests.helpers import eventually, service_env, start_service

pytestmark = pytest.mark.broker

TENANT = "shop-a"


async def _groups(redis: Redis, keys: Keys) -> dict[str, set[str]]:
    """Every skill group set of the tenant the roster names, with its members."""
    tenant = next(t for t in load_roster().tenants if t.tenant_id == TENANT)
    names = {g for a in tenant.agents for g in a.groups}
    return {g: {text(m) for m in await redis.smembers(keys.group_agents(TENANT, g))} for g in sorted(names)}


async def test_presence_rebuilds_agents_after_redis_restarted_empty(
    settings: ServiceSettings, own_redis: LocalRedis
) -> None:
    settings = settings.model_copy(update={"redis_url": own_redis.url})
    keys = Keys(settings.key_prefix)
    env = service_env(settings, free_port(), SB_SERVICE_NAME="presence", SB_SWEEP_INTERVAL_S="0.2")
    proc, _ = await start_service("switchboard.presence", env, timeout=60)
    redis = Redis.from_url(own_redis.url)
    producer = RecordProducer(settings)
    await producer.start()
    try:
        store = PresenceStore(redis, keys, producer)
        epoch = await store.login(TENANT, "a-emma", gateway_instance="gw-1")
        await store.set_status(TENANT, "a-emma", Status.BUSY, "agent", epoch)
        await store.update_profile(TENANT, "a-lina", capacity={"chat": 7}, multiplier=1.5)  # an operator's change
        before = {a.agent_id: a for a in await store.list_agents(TENANT)}
        groups_before = await _groups(redis, keys)
        assert len(before) == 5 and await redis.exists(keys.state_mark(TENANT, "presence"))

        killed = time.monotonic()
        await asyncio.to_thread(own_redis.restart, empty=True)

        async def rebuilt() -> bool:
            try:
                return bool(await redis.exists(keys.state_mark(TENANT, "presence")))
            except RedisError:
                return False

        await eventually(rebuilt, timeout=30, what="presence's mark of shop-a back")
        rebuild_s = time.monotonic() - killed
        after = {a.agent_id: a for a in await store.list_agents(TENANT)}
        assert set(after) == set(before)
        emma, lina = after["a-emma"], after["a-lina"]
        assert (emma.status, emma.session_epoch) == (Status.BUSY, epoch)
        assert emma.presence_version == before["a-emma"].presence_version
        assert (lina.capacity["chat"], lina.multiplier) == (7, 1.5)
        for agent_id, state in before.items():
            assert after[agent_id].groups == state.groups
            assert after[agent_id].proficiency == state.proficiency
            assert after[agent_id].languages == state.languages
        assert await _groups(redis, keys) == groups_before
        # the desk's session goes on: no new login, no new epoch
        assert await store.heartbeat(TENANT, "a-emma", epoch) is HeartbeatResult.OK
        assert await redis.zscore(keys.heartbeats(TENANT), "a-emma") is not None
        # and the next change is newer than anything the router saw before
        await store.set_status(TENANT, "a-emma", Status.AVAILABLE, "agent", epoch)
        assert (await store.get_agent(TENANT, "a-emma")).presence_version > before["a-emma"].presence_version  # type: ignore[union-attr]
        print(f"presence rebuilt shop-a {rebuild_s:.2f}s after Redis restarted empty")
    finally:
        await producer.stop()
        await redis.aclose()
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 20)
