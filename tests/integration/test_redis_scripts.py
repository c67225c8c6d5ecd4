"""Scripts from `.lua` files run alike on one Redis server and on the cluster: pipelined, after a script cache
flush, and touching only the keys they declare."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from switchboard.runtime.lua import ScriptCall, run_pipelined
from switchboard.runtime.settings import ServiceSettings
from switchboard.state import agents_lua as lua
from switchboard.state.keys import Keys
from tests.redis_cluster import on_both_redis_backends

pytestmark = [pytest.mark.broker, on_both_redis_backends]

HEARTBEAT = lua.HEARTBEAT


async def test_pipelined_calls_over_many_tenants_survive_a_script_cache_flush(
    redis: Redis, settings: ServiceSettings
) -> None:
    keys = Keys(settings.key_prefix)
    tenants = [f"shop-{i}" for i in range(12)]  # spread over the cluster's slots
    for tenant in tenants:
        await redis.hset(keys.agent(tenant, "a1"), mapping={"session_epoch": 3, "status": "available"})
    await redis.script_flush()  # every node forgets every script: each call first meets NOSCRIPT
    calls = [
        ScriptCall(HEARTBEAT, [keys.agent(t, "a1"), keys.heartbeats(t)], ["a1", 3, 1000 + i])
        for i, t in enumerate(tenants)
    ]
    calls.append(ScriptCall(HEARTBEAT, [keys.agent("shop-0", "a1"), keys.heartbeats("shop-0")], ["a1", 2, 5]))
    assert await run_pipelined(redis, calls) == [1] * len(tenants) + [lua.STALE_SESSION]
    for i, tenant in enumerate(tenants):
        assert await redis.zscore(keys.heartbeats(tenant), "a1") == 1000 + i


async def test_a_single_call_loads_its_script_when_the_node_lost_it(redis: Redis, settings: ServiceSettings) -> None:
    keys = Keys(settings.key_prefix)
    await redis.hset(keys.agent("shop-a", "a1"), mapping={"session_epoch": 1, "status": "away"})
    await redis.script_flush()
    assert await HEARTBEAT(redis, [keys.agent("shop-a", "a1"), keys.heartbeats("shop-a")], ["a1", 1, 7]) == 1


UNCHECKED = "\x00"  # the own groups the caller read: not checked


async def test_profile_script_refuses_when_the_agent_is_in_a_group_the_caller_did_not_name(
    redis: Redis, settings: ServiceSettings
) -> None:
    """The caller names the group sets it read; groups changed meanwhile mean RETRY and nothing written."""
    keys = Keys(settings.key_prefix)
    agent = keys.agent("shop-a", "a1")
    base = [agent, keys.tenant_agents("shop-a"), keys.presence_pending("shop-a")]
    code, _ = await lua.PROFILE(
        redis, [*base, keys.group_agents("shop-a", "orders")], ["a1", 1, "orders", "orders", UNCHECKED, "cap:chat", "5"]
    )
    assert code == lua.CHANGED
    stale = await lua.PROFILE(
        redis,
        [*base, keys.group_agents("shop-a", "presales")],
        ["a1", 2, "presales", "presales", UNCHECKED, "cap:chat", "9"],
    )
    assert stale == [lua.RETRY, 0]
    assert await redis.hget(agent, "cap:chat") == b"5"
    assert await redis.smembers(keys.group_agents("shop-a", "presales")) == set()
    named = [keys.group_agents("shop-a", g) for g in ("orders", "presales")]
    code, _ = await lua.PROFILE(
        redis, [*base, *named], ["a1", 3, "presales", "orders,presales", UNCHECKED, "cap:chat", "9"]
    )
    assert code == lua.CHANGED
    assert await redis.smembers(keys.group_agents("shop-a", "orders")) == set()
    assert await redis.smembers(keys.group_agents("shop-a", "presales")) == {b"a1"}
    # a regroup from the own groups it read: another value there now (an operator changed them) is a retry too
    await redis.hset(agent, "own_groups", "presales")
    regroup = ["a1", 4, "presales,general", "general,presales", "orders", "own_groups", "presales"]
    general = [keys.group_agents("shop-a", g) for g in ("general", "presales")]
    assert await lua.PROFILE(redis, [*base, *general], regroup) == [lua.RETRY, 0]
    regroup[4] = "presales"
    code, _ = await lua.PROFILE(redis, [*base, *general], regroup)
    assert code == lua.CHANGED
    assert await redis.hget(agent, "groups") == b"presales,general"
