"""PresenceStore on real Redis and Kafka: sessions fence each other; each change is one record and one desk event."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from switchboard.contracts import AgentPresence, AgentStatus, DeskEventType
from switchboard.runtime.kafka import RecordProducer
from switchboard.runtime.settings import ServiceSettings
from switchboard.state.agent_model import Status
from switchboard.state.agents import AgentOffline, HeartbeatResult, PresenceStore, StaleSession, UnknownAgent
from switchboard.state.keys import Keys
from switchboard.state.outbox import read_outbox
from switchboard.state.roster import RosterAgent, load_roster
from tests.helpers import read_topic
from tests.redis_cluster import on_both_redis_backends

pytestmark = [pytest.mark.broker, on_both_redis_backends]


@pytest.fixture
async def store(redis: Redis, settings: ServiceSettings, producer: RecordProducer) -> PresenceStore:
    store = PresenceStore(redis, Keys(settings.key_prefix), producer, wrap_up_s=0.2)
    await store.load_roster(load_roster())
    return store


def _records(found: list[tuple[str, object]]) -> list[tuple[str, AgentPresence]]:
    return [(k, m) for k, m in found if isinstance(m, AgentPresence)]


async def test_roster_loads_profiles_and_group_sets(store: PresenceStore) -> None:
    lina = await store.get_agent("shop-a", "a-lina")
    assert lina is not None
    assert lina.status is Status.OFFLINE
    assert lina.groups == ["presales", "orders"]
    assert lina.capacity == {"chat": 5, "email": 10, "phone": 1}
    assert "a-lina" in await store.group_members("shop-a", "presales")
    assert await store.get_agent("shop-b", "a-lina") is None
    # Loading the same roster again changes nothing and publishes nothing.
    assert await store.load_roster(load_roster()) == 0


async def test_newer_session_fences_older(store: PresenceStore, settings: ServiceSettings) -> None:
    first = await store.login("shop-a", "a-lina")
    second = await store.login("shop-a", "a-lina")
    assert second > first
    assert await store.heartbeat("shop-a", "a-lina", first) is HeartbeatResult.STALE_SESSION
    assert await store.heartbeat("shop-a", "a-lina", second) is HeartbeatResult.OK
    with pytest.raises(StaleSession):
        await store.set_status("shop-a", "a-lina", Status.AWAY, "agent", session_epoch=first)
    # The old tab's logout does not log the new session out.
    assert not await store.logout("shop-a", "a-lina", first)
    agent = await store.get_agent("shop-a", "a-lina")
    assert agent is not None
    assert agent.status is Status.AVAILABLE
    assert agent.session_epoch == second


async def test_status_change_is_record_and_desk_event(store: PresenceStore, settings: ServiceSettings) -> None:
    epoch = await store.login("shop-a", "a-wei", gateway_instance="gw-1")
    state = await store.set_status("shop-a", "a-wei", "busy", "agent", session_epoch=epoch, reason="lunch soon")
    assert state.status is Status.BUSY
    assert await store.logout("shop-a", "a-wei", epoch)
    assert await store.heartbeat("shop-a", "a-wei", epoch) is HeartbeatResult.OFFLINE
    with pytest.raises(AgentOffline):
        await store.set_status("shop-a", "a-wei", "available", "router")

    found = await read_topic(settings.kafka_bootstrap, store.producer.topics.presence, 8 + 3)
    wei = [m for k, m in _records(found) if k == "shop-a/a-wei"]
    statuses = [m.status for m in wei]
    # roster load (offline), login (available), busy, offline
    assert statuses[-3:] == [
        AgentStatus.AGENT_STATUS_AVAILABLE,
        AgentStatus.AGENT_STATUS_BUSY,
        AgentStatus.AGENT_STATUS_OFFLINE,
    ]
    versions = [m.presence_version for m in wei]
    assert versions == sorted(versions)
    assert wei[-1].changed_by == "agent"

    events = await read_outbox(store.redis, store.keys, "shop-a", "a-wei", 0)
    assert [e.type for e in events] == [DeskEventType.DESK_EVENT_STATUS] * 3
    assert [e.status for e in events] == statuses[-3:]
    assert [e.seq for e in events] == [1, 2, 3]


async def test_unknown_agent_and_live_profile_change(store: PresenceStore) -> None:
    with pytest.raises(UnknownAgent):
        await store.login("shop-a", "nobody")
    with pytest.raises(UnknownAgent):
        await store.login("shop-b", "a-lina")
    assert await store.update_profile("shop-a", "a-min", groups=["complaints", "vip"], capacity={"chat": 7})
    assert "a-min" not in await store.group_members("shop-a", "after_sales")
    assert "a-min" in await store.group_members("shop-a", "vip")
    agent = await store.get_agent("shop-a", "a-min")
    assert agent is not None
    assert agent.capacity["chat"] == 7


async def test_an_agent_hash_holding_only_the_routers_load_is_not_a_known_agent(
    store: PresenceStore, redis: Redis, settings: ServiceSettings
) -> None:
    """After Redis lost its data the router's rebuild writes an owner's `used:*` back before presence restores
    the agent: until presence has written it, nobody logs that agent in, changes it or publishes it."""
    key = Keys(settings.key_prefix).agent("shop-a", "a-lina")
    await redis.delete(key)
    await redis.hset(key, "used:chat", 1)
    with pytest.raises(UnknownAgent):
        await store.login("shop-a", "a-lina", after_epoch=4)
    with pytest.raises(UnknownAgent):
        await store.set_status("shop-a", "a-lina", Status.AWAY, "operator:ops")
    assert await store.get_agent("shop-a", "a-lina") is None
    assert await redis.hgetall(key) == {b"used:chat": b"1"}
    assert await store.publish("shop-a", ["a-lina"])
    # Presence writing the agent back (here a roster load) keeps the router's load, and the agent logs in.
    await store.load_roster(load_roster())
    await store.login("shop-a", "a-lina", after_epoch=4)
    lina = await store.get_agent("shop-a", "a-lina")
    assert lina is not None and lina.capacity["chat"] == 5 and lina.session_epoch == 5
    assert await redis.hget(key, "used:chat") == b"1"
    # Every record of the agent is a whole one (the roster's first load, its reload and the login): none was
    # published from the hash that held only the router's load.
    found = _records(await read_topic(settings.kafka_bootstrap, store.producer.topics.presence, 8 + 2))
    lina = [m for k, m in found if k == "shop-a/a-lina"]
    assert len(lina) == 3
    assert all(list(m.skill_groups) == ["presales", "orders"] for m in lina)


async def test_temporary_agent_removed(store: PresenceStore) -> None:
    helper = RosterAgent(agent_id="tmp-1", groups=["presales"], capacity={"chat": 3}, temporary=True)
    assert await store.add_agent("shop-a", helper)
    await store.login("shop-a", "tmp-1")
    assert await store.remove_agent("shop-a", "tmp-1", "operator:ops")
    assert await store.get_agent("shop-a", "tmp-1") is None
    assert "tmp-1" not in await store.group_members("shop-a", "presales")
    with pytest.raises(UnknownAgent):
        await store.login("shop-a", "tmp-1")


async def test_roster_reload_prunes_agents_it_no_longer_lists(store: PresenceStore) -> None:
    roster = load_roster()
    helper = RosterAgent(agent_id="tmp-9", groups=["orders"], temporary=True)
    await store.add_agent("shop-a", helper)
    await store.login("shop-a", "a-jun")
    shop_a = roster.tenants[0]
    shop_a.agents = [a for a in shop_a.agents if a.agent_id != "a-jun"]
    assert await store.load_roster(roster) == 1
    assert await store.get_agent("shop-a", "a-jun") is None
    assert "a-jun" not in await store.group_members("shop-a", "orders")
    assert await store.get_agent("shop-a", "tmp-9") is not None  # temporary agents belong to operators


async def test_a_reload_of_the_same_roster_keeps_live_changes_and_an_edited_entry_wins(
    store: PresenceStore, settings: ServiceSettings
) -> None:
    lina = await store.get_agent("shop-a", "a-lina")
    assert lina is not None
    assert lina.proficiency == {"presales": 5, "orders": 4}
    # an operator changes her levels and capacity live
    assert await store.update_profile("shop-a", "a-lina", proficiency={"presales": 2}, capacity={"chat": 9})
    # presence restarts: the file is the same, what operators changed stays
    assert await store.load_roster(load_roster()) == 0
    lina = await store.get_agent("shop-a", "a-lina")
    assert lina is not None
    assert (lina.proficiency, lina.capacity["chat"]) == ({"presales": 2}, 9)
    found = await read_topic(settings.kafka_bootstrap, settings.topic_prefix + "sb.presence.v1", 8 + 1)
    lina_records = [m for k, m in _records(found) if k == "shop-a/a-lina"]
    assert dict(lina_records[-1].proficiency) == {"presales": 2}

    # her entry in the file is edited: the file's entry is written as a whole
    roster = load_roster()
    entry = roster.agent("shop-a", "a-lina")
    assert entry is not None
    entry.proficiency = {"presales": 4, "orders": 3}
    assert await store.load_roster(roster) == 1
    lina = await store.get_agent("shop-a", "a-lina")
    assert lina is not None
    assert (lina.proficiency, lina.capacity["chat"]) == ({"presales": 4, "orders": 3}, 5)

    # an agent the roster dropped (removed) and lists again comes back, though its entry is the same as before
    shop_a = roster.tenants[0]
    jun = next(a for a in shop_a.agents if a.agent_id == "a-jun")
    shop_a.agents.remove(jun)
    await store.load_roster(roster)
    assert await store.get_agent("shop-a", "a-jun") is None
    shop_a.agents.append(jun)
    assert await store.load_roster(roster) == 1
    back = await store.get_agent("shop-a", "a-jun")
    assert back is not None
    assert back.proficiency == {"promotions": 4, "orders": 2, "presales": 3}
    assert "a-jun" in await store.group_members("shop-a", "promotions")
