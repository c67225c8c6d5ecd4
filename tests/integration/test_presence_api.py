"""The operator API on real Redis and Kafka: auth per tenant, capacity factors, temporary agents, surge profiles
and schedules, audit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from fastapi import FastAPI
from redis.asyncio import Redis

from switchboard.contracts import TYPE_HEADER, AgentPresence, decode
from switchboard.presence.api import mount_operator_api
from switchboard.presence.audit import AuditLog
from switchboard.presence.control import SurgeControl
from switchboard.presence.settings import OperatorGrant
from switchboard.presence.sweep import Sweeper
from switchboard.runtime.kafka import RecordProducer
from switchboard.runtime.settings import ServiceSettings
from switchboard.state.agents import PresenceStore, Widen
from switchboard.state.keys import Keys
from switchboard.state.roster import RosterAgent, load_roster
from tests.helpers import eventually, read_topic
from tests.redis_cluster import on_both_redis_backends

pytestmark = [pytest.mark.broker, on_both_redis_backends]

OPS_A = "ops-a-token-0123456789"
OPS_B = "ops-b-token-0123456789"
PLATFORM = "platform-token-0123456789"
GRANTS = [
    OperatorGrant(name="ops-a", token=OPS_A, tenants=["shop-a"]),
    OperatorGrant(name="ops-b", token=OPS_B, tenants=["shop-b"]),
    OperatorGrant(name="platform", token=PLATFORM, tenants=["*"]),
]
A = "/v1/operator/tenants/shop-a"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Presence:
    """One in-process presence: store, controls, sweeper and the operator API client."""

    def __init__(self, store: PresenceStore, control: SurgeControl, http: httpx.AsyncClient) -> None:
        self.store = store
        self.control = control
        self.http = http


@pytest.fixture
async def presence(settings: ServiceSettings, redis: Redis) -> AsyncIterator[Presence]:
    producer = RecordProducer(settings)
    await producer.start()
    store = PresenceStore(redis, Keys(settings.key_prefix), producer)
    await store.load_roster(load_roster())
    control = SurgeControl(store, AuditLog(redis, store.keys))
    app = FastAPI()
    mount_operator_api(app, control, GRANTS)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://presence") as http:
            yield Presence(store, control, http)
    finally:
        await producer.stop()


AUTH_MATRIX = [
    ({}, 401),
    ({"Authorization": "Bearer not-a-token"}, 401),
    ({"Authorization": f"Basic {OPS_A}"}, 401),
    ({"Authorization": f"Bearer {OPS_A[:-1]}"}, 401),
    (auth(OPS_B), 403),
    (auth(OPS_A), 200),
    (auth(PLATFORM), 200),
]


async def test_auth_matrix(presence: Presence) -> None:
    # one test over every case: each broker test pays for its own topics
    for headers, code in AUTH_MATRIX:
        for method, path, body in [
            ("GET", f"{A}/agents", None),
            ("POST", f"{A}/capacity", {"factor": 1.0}),
            ("GET", f"{A}/audit", None),
            ("POST", f"{A}/surge/deactivate", None),
        ]:
            resp = await presence.http.request(method, path, json=body, headers=headers)
            assert resp.status_code == code, (headers, method, path, resp.text)
            if code == 401:
                assert resp.headers["www-authenticate"] == "Bearer"


async def test_operator_of_shop_a_cannot_touch_shop_b(presence: Presence) -> None:
    resp = await presence.http.post("/v1/operator/tenants/shop-b/capacity", json={"factor": 3.0}, headers=auth(OPS_A))
    assert resp.status_code == 403
    hao = await presence.store.get_agent("shop-b", "b-hao")
    assert hao is not None
    assert hao.multiplier == 1.0
    # Shop A's view lists only shop A's agents.
    resp = await presence.http.get(f"{A}/agents", headers=auth(OPS_A))
    assert {a["agent_id"] for a in resp.json()["agents"]} == {"a-lina", "a-wei", "a-min", "a-emma", "a-jun"}


async def test_group_capacity_factor_changes_hash_and_publishes(presence: Presence, settings: ServiceSettings) -> None:
    resp = await presence.http.post(f"{A}/capacity", json={"factor": 1.5, "group": "presales"}, headers=auth(OPS_A))
    assert resp.status_code == 200
    assert sorted(resp.json()["changed"]) == ["a-emma", "a-jun", "a-lina"]
    raw = await presence.store.redis.hget(presence.store.keys.agent("shop-a", "a-lina"), "multiplier")
    assert float(raw) == 1.5
    wei = await presence.store.get_agent("shop-a", "a-wei")
    assert wei is not None
    assert wei.multiplier == 1.0
    view = (await presence.http.get(f"{A}/agents", params={"group": "presales"}, headers=auth(OPS_A))).json()
    lina = next(a for a in view["agents"] if a["agent_id"] == "a-lina")
    assert lina["effective_capacity"] == {"chat": 7, "email": 15, "phone": 1}
    found = await read_topic(settings.kafka_bootstrap, settings.topic_prefix + "sb.presence.v1", 8 + 3)
    surged = {k: m for k, m in found if isinstance(m, AgentPresence) and m.capacity_multiplier == 1.5}
    assert set(surged) == {"shop-a/a-emma", "shop-a/a-jun", "shop-a/a-lina"}
    audit = (await presence.http.get(f"{A}/audit", headers=auth(OPS_A))).json()
    assert audit[0]["action"] == "scale_capacity"
    assert audit[0]["operator"] == "operator:ops-a"
    assert audit[0]["params"] == {"factor": 1.5, "group": "presales"}


async def test_live_skill_change_and_bad_input(presence: Presence) -> None:
    resp = await presence.http.patch(
        f"{A}/agents/a-wei", json={"groups": ["logistics", "complaints"], "capacity": {"chat": 9}}, headers=auth(OPS_A)
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["groups"] == ["logistics", "complaints"]
    assert resp.json()["capacity"]["chat"] == 9
    assert "a-wei" in await presence.store.group_members("shop-a", "complaints")
    assert "a-wei" not in await presence.store.group_members("shop-a", "after_sales")
    bad = [
        ("PATCH", f"{A}/agents/a-wei", {"capacity": {"chat": -1}}, 422),
        ("PATCH", f"{A}/agents/a-wei", {}, 422),
        ("PATCH", f"{A}/agents/nobody", {"languages": ["en"]}, 404),
        ("POST", f"{A}/capacity", {"factor": 0}, 422),
        ("POST", f"{A}/capacity", {"factor": 50}, 422),
        ("PUT", f"{A}/agents/a-wei/status", {"status": "away"}, 409),  # offline: only a login brings it back
        ("POST", f"{A}/surge/activate", {"profile": "nope"}, 404),
    ]
    for method, path, body, code in bad:
        resp = await presence.http.request(method, path, json=body, headers=auth(OPS_A))
        assert resp.status_code == code, (method, path, body, resp.text)


async def test_temporary_agents_in_bulk(presence: Presence) -> None:
    helpers = [{"agent_id": f"tmp-{i}", "groups": ["presales"], "capacity": {"chat": 4}} for i in range(20)]
    resp = await presence.http.post(f"{A}/temporary-agents", json={"agents": helpers}, headers=auth(OPS_A))
    assert resp.status_code == 201, resp.text
    assert len(await presence.store.group_members("shop-a", "presales")) == 23
    passwords = resp.json()["passwords"]
    assert len(set(passwords.values())) == 20
    # a helper logs in at the gateway with the password issued to it, and only with that, only in its shop
    assert await presence.store.check_temporary_login("shop-a", "tmp-3", passwords["tmp-3"])
    assert not await presence.store.check_temporary_login("shop-a", "tmp-3", passwords["tmp-4"])
    assert not await presence.store.check_temporary_login("shop-b", "tmp-3", passwords["tmp-3"])
    assert not await presence.store.check_temporary_login("shop-a", "a-lina", "dev-lina")  # rostered: the file
    audit = (await presence.http.get(f"{A}/audit", headers=auth(OPS_A))).json()
    assert passwords["tmp-3"] not in str(audit)
    page = (await presence.http.get(f"{A}/agents", params={"offset": 20, "limit": 3}, headers=auth(OPS_A))).json()
    assert page["total"] == 25
    assert [a["agent_id"] for a in page["agents"]] == ["tmp-5", "tmp-6", "tmp-7"]
    assert page["by_status"] == {"offline": 25}
    await presence.store.login("shop-a", "tmp-3")
    resp = await presence.http.post(
        f"{A}/temporary-agents/remove",
        json={"agent_ids": [f"tmp-{i}" for i in range(20)] + ["a-lina", "ghost"]},
        headers=auth(OPS_A),
    )
    assert resp.status_code == 200
    outcome = resp.json()
    assert outcome["a-lina"] == "refused: not temporary"
    assert outcome["ghost"] == "unknown"
    assert sum(v == "removed" for v in outcome.values()) == 20
    assert not await presence.store.check_temporary_login("shop-a", "tmp-3", passwords["tmp-3"])
    assert await presence.store.group_members("shop-a", "presales") == ["a-emma", "a-jun", "a-lina"]
    # A rostered agent cannot be overwritten as a temporary one.
    resp = await presence.http.post(
        f"{A}/temporary-agents", json={"agents": [{"agent_id": "a-lina", "groups": ["x"]}]}, headers=auth(OPS_A)
    )
    assert resp.status_code == 409


async def test_profile_on_and_off(presence: Presence) -> None:
    profile = {"tenant_factor": 1.2, "group_factors": {"presales": 2.0}, "description": "Double 11"}
    resp = await presence.http.put(f"{A}/surge/profiles/double11", json=profile, headers=auth(OPS_A))
    assert resp.status_code == 200, resp.text
    resp = await presence.http.post(f"{A}/surge/activate", json={"profile": "double11"}, headers=auth(OPS_A))
    assert resp.status_code == 200
    multipliers = {a.agent_id: a.multiplier for a in await presence.store.list_agents("shop-a")}
    assert multipliers == {"a-lina": 2.0, "a-emma": 2.0, "a-jun": 2.0, "a-wei": 1.2, "a-min": 1.2}
    # a temporary agent added during the surge gets the surge factor
    await presence.http.post(
        f"{A}/temporary-agents", json={"agents": [{"agent_id": "tmp-x", "groups": ["orders"]}]}, headers=auth(OPS_A)
    )
    tmp = await presence.store.get_agent("shop-a", "tmp-x")
    assert tmp is not None
    assert tmp.multiplier == 1.2
    resp = await presence.http.post(f"{A}/surge/deactivate", headers=auth(OPS_A))
    assert all(a.multiplier == 1.0 for a in await presence.store.list_agents("shop-a"))
    actions = [e["action"] for e in (await presence.http.get(f"{A}/audit", headers=auth(OPS_A))).json()]
    assert actions[:4] == ["deactivate_profile", "add_temporary_agents", "activate_profile", "put_profile"]


async def test_scheduled_profile_applies_and_reverts(presence: Presence, redis: Redis) -> None:
    await presence.http.put(f"{A}/surge/profiles/midnight", json={"tenant_factor": 2.0}, headers=auth(OPS_A))
    start = datetime.now(UTC) + timedelta(seconds=0.5)
    end = start + timedelta(seconds=1)
    body = {"profile": "midnight", "start": start.isoformat(), "end": end.isoformat()}
    resp = await presence.http.post(f"{A}/surge/schedules", json=body, headers=auth(OPS_A))
    assert resp.status_code == 201, resp.text
    schedule_id = resp.json()["schedule_id"]
    bad = {"profile": "midnight", "start": end.isoformat(), "end": start.isoformat()}
    assert (await presence.http.post(f"{A}/surge/schedules", json=bad, headers=auth(OPS_A))).status_code == 422
    naive = {"profile": "midnight", "start": "2026-11-11T00:00:00", "end": "2026-11-11T02:00:00"}
    assert (await presence.http.post(f"{A}/surge/schedules", json=naive, headers=auth(OPS_A))).status_code == 422

    # Two replicas sweep: the window is applied once and reverted once.
    sweepers = [Sweeper(presence.store, presence.control, grace_s=60, interval_s=0.05) for _ in range(2)]
    tasks = [asyncio.create_task(s.run()) for s in sweepers]
    try:

        async def multiplier_is(value: float) -> bool:
            return all(a.multiplier == value for a in await presence.store.list_agents("shop-a"))

        await eventually(lambda: multiplier_is(2.0), timeout=5, what="schedule applied")
        surge = (await presence.http.get(f"{A}/surge", headers=auth(OPS_A))).json()
        assert surge["active_profile"] == "midnight"
        await eventually(lambda: multiplier_is(1.0), timeout=5, what="schedule reverted")
    finally:
        for sweeper in sweepers:
            sweeper.stop()
        await asyncio.gather(*tasks)
    surge = (await presence.http.get(f"{A}/surge", headers=auth(OPS_A))).json()
    assert surge["active_profile"] is None
    assert surge["schedules"][0]["state"] == "done"
    audit = (await presence.http.get(f"{A}/audit", headers=auth(OPS_A))).json()
    by_schedule = [e for e in audit if e["operator"] == f"schedule:{schedule_id}"]
    assert [e["action"] for e in by_schedule] == ["deactivate_profile", "activate_profile"]
    # shop B never saw any of it
    assert all(a.multiplier == 1.0 for a in await presence.store.list_agents("shop-b"))
    assert await redis.xlen(presence.store.keys.presence_audit("shop-b")) == 0


async def test_redis_unreachable_is_503(settings: ServiceSettings) -> None:
    dead = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    producer = RecordProducer(settings)
    await producer.start()
    store = PresenceStore(dead, Keys(settings.key_prefix), producer)
    app = FastAPI()
    mount_operator_api(app, SurgeControl(store, AuditLog(dead, store.keys)), GRANTS)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://presence") as http:
            resp = await http.get(f"{A}/agents", headers=auth(OPS_A))
        assert resp.status_code == 503
        assert resp.headers["retry-after"] == "5"
    finally:
        await dead.aclose()
        await producer.stop()


async def test_profile_checked_against_the_routing_config(presence: Presence) -> None:
    bad = {
        "group_factors": {"presales": 2.0, "nosuch": 1.5},
        "overflow": {"presales": [{"group": "presales", "after_s": 10}, {"group": "ghosts", "after_s": 10}]},
        "pools": {"general": ["presales", "warehouse"]},
    }
    resp = await presence.http.put(f"{A}/surge/profiles/broken", json=bad, headers=auth(OPS_A))
    assert resp.status_code == 422, resp.text
    assert sorted(resp.json()["detail"]) == [
        "group_factors: unknown group 'nosuch'",
        "overflow.presales: unknown or own group 'ghosts'",
        "overflow.presales: unknown or own group 'presales'",
        "pools.general: unknown group 'warehouse'",
    ]
    for out_of_range in [
        {"overflow": {"presales": [{"group": "general", "after_s": -5}]}},
        {"overflow": {"presales": [{"group": "general", "service_level_below": 1.5}]}},
        {"overflow": {"presales": [{"group": "general", "estimated_wait_over_s": 100_000}]}},
        {"response_target_s": {"presales": 0}},
    ]:
        resp = await presence.http.put(f"{A}/surge/profiles/broken", json=out_of_range, headers=auth(OPS_A))
        assert resp.status_code == 422, (out_of_range, resp.text)
    surge = (await presence.http.get(f"{A}/surge", headers=auth(OPS_A))).json()
    assert surge["profiles"] == {}
    audit = (await presence.http.get(f"{A}/audit", headers=auth(OPS_A))).json()
    assert [e for e in audit if e["action"] == "put_profile"] == []
    # a fitting profile is stored and audited
    good = {"overflow": {"presales": [{"group": "general", "after_s": 5}]}, "pools": {"orders": ["general"]}}
    resp = await presence.http.put(f"{A}/surge/profiles/double11", json=good, headers=auth(OPS_A))
    assert resp.status_code == 200, resp.text
    audit = (await presence.http.get(f"{A}/audit", headers=auth(OPS_A))).json()
    assert audit[0]["action"] == "put_profile"
    assert audit[0]["params"]["pools"] == {"orders": ["general"]}


async def read_all(bootstrap: str, topic: str) -> list[tuple[str, object]]:
    """Every record on the topic now (key, message)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    found: list[tuple[str, object]] = []
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        ends = await consumer.end_offsets(partitions)
        while [p for p in partitions if await consumer.position(p) < ends[p]]:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for r in records:
                    headers = {k: v.decode() for k, v in r.headers}
                    found.append((r.key.decode() if r.key else "", decode(headers.get(TYPE_HEADER), r.value)))
    finally:
        await consumer.stop()
    return found


async def groups_of(presence: Presence, agent_id: str) -> tuple[list[str], list[str]]:
    state = await presence.store.get_agent("shop-a", agent_id)
    assert state is not None
    return state.groups, state.own_groups


async def test_pools_widen_agents_while_on_and_revert_exactly(presence: Presence, settings: ServiceSettings) -> None:
    profile = {"pools": {"orders": ["general", "after_sales"]}, "group_factors": {"general": 2.0}}
    assert (await presence.http.put(f"{A}/surge/profiles/d11", json=profile, headers=auth(OPS_A))).status_code == 200
    await presence.store.login("shop-a", "a-lina")
    resp = await presence.http.post(f"{A}/surge/activate", json={"profile": "d11"}, headers=auth(OPS_A))
    assert resp.status_code == 200, resp.text
    assert await groups_of(presence, "a-lina") == (
        ["presales", "orders", "general", "after_sales"],
        ["presales", "orders"],
    )
    assert await groups_of(presence, "a-wei") == (["after_sales", "logistics"], ["after_sales", "logistics"])
    assert await presence.store.group_members("shop-a", "general") == ["a-jun", "a-lina"]
    # agents added, reloaded or changed while the profile is on serve what it says too
    tmp = [{"agent_id": "tmp-1", "groups": ["orders"]}]
    assert (await presence.http.post(f"{A}/temporary-agents", json={"agents": tmp}, headers=auth(OPS_A))).is_success
    assert await groups_of(presence, "tmp-1") == (["orders", "general", "after_sales"], ["orders"])
    await presence.store.update_profile("shop-a", "a-lina", groups=["presales"])
    # her roster entry is edited (a reload writes only edited entries): her own groups come back, widened
    roster = load_roster()
    entry = roster.agent("shop-a", "a-lina")
    assert entry is not None
    entry.display_name = "李娜 Lina (senior)"
    assert await presence.store.load_roster(roster) == 1
    assert await groups_of(presence, "a-lina") == (
        ["presales", "orders", "general", "after_sales"],
        ["presales", "orders"],
    )
    resp = await presence.http.patch(f"{A}/agents/a-wei", json={"groups": ["logistics", "orders"]}, headers=auth(OPS_A))
    assert resp.json()["groups"] == ["logistics", "orders", "general", "after_sales"]
    assert resp.json()["own_groups"] == ["logistics", "orders"]
    resp = await presence.http.patch(f"{A}/agents/a-jun", json={"groups": ["promotions"]}, headers=auth(OPS_A))
    assert resp.json()["groups"] == ["promotions"]
    # switched off: everyone serves exactly their own groups, whatever happened meanwhile
    assert (await presence.http.post(f"{A}/surge/deactivate", headers=auth(OPS_A))).status_code == 200
    for agent_id, own in [
        ("a-lina", ["presales", "orders"]),
        ("a-wei", ["logistics", "orders"]),
        ("a-jun", ["promotions"]),
        ("tmp-1", ["orders"]),
        ("a-min", ["complaints", "after_sales"]),
    ]:
        assert await groups_of(presence, agent_id) == (own, own), agent_id
    assert await presence.store.group_members("shop-a", "general") == []
    assert await presence.store.group_members("shop-a", "after_sales") == ["a-min"]
    lina = await presence.store.get_agent("shop-a", "a-lina")
    assert lina is not None
    assert lina.status.value == "available"
    # the records say which profile was in force when they were written
    found = await read_all(settings.kafka_bootstrap, settings.topic_prefix + "sb.presence.v1")
    lina_records = [m for k, m in found if k == "shop-a/a-lina" and isinstance(m, AgentPresence)]
    widened = [m for m in lina_records if "general" in m.skill_groups]
    assert widened
    assert {m.surge_profile for m in widened} == {"d11"}
    assert lina_records[-1].surge_profile == ""
    assert list(lina_records[-1].skill_groups) == ["presales", "orders"]
    assert lina_records[-1].capacity_multiplier == 1.0


async def test_an_agent_written_while_a_profile_switches_serves_what_the_profile_in_force_says(
    presence: Presence,
) -> None:
    profile = {"pools": {"orders": ["general"]}}
    assert (await presence.http.put(f"{A}/surge/profiles/d11", json=profile, headers=auth(OPS_A))).status_code == 200
    looked_up = presence.control.widen_for
    switch: list[str] = []

    async def racing(tenant_id: str) -> tuple[str, Widen]:
        found = await looked_up(tenant_id)
        if switch:  # another replica switches the profile between this write's look-up and its scripts
            if switch.pop() == "on":
                await presence.control.activate(tenant_id, "d11", "operator:other-replica")
            else:
                await presence.control.deactivate(tenant_id, "operator:other-replica")
        return found

    presence.store.widening = racing
    helper = RosterAgent(agent_id="tmp-r", groups=["orders"], temporary=True)
    switch.append("on")
    await presence.store.add_agents("shop-a", [helper])
    assert await groups_of(presence, "tmp-r") == (["orders", "general"], ["orders"])
    switch.append("off")
    await presence.store.update_profile("shop-a", "tmp-r", groups=["orders", "logistics"])
    assert await groups_of(presence, "tmp-r") == (["orders", "logistics"], ["orders", "logistics"])
    assert await presence.store.group_members("shop-a", "general") == []


async def test_levels_and_languages_patched_live_reach_hash_record_and_audit(
    presence: Presence, settings: ServiceSettings
) -> None:
    key = presence.store.keys.agent("shop-a", "a-lina")
    assert await presence.store.redis.hget(key, "proficiency") == b"orders:4,presales:5"  # from the roster
    resp = await presence.http.patch(
        f"{A}/agents/a-lina", json={"proficiency": {"presales": 3, "orders": 5}, "languages": ["zh", "ja"]},
        headers=auth(OPS_A),
    )  # fmt: skip
    assert resp.status_code == 200, resp.text
    assert resp.json()["proficiency"] == {"orders": 5, "presales": 3}
    assert resp.json()["languages"] == ["zh", "ja"]
    assert await presence.store.redis.hget(key, "proficiency") == b"orders:5,presales:3"

    found = await read_topic(settings.kafka_bootstrap, settings.topic_prefix + "sb.presence.v1", 8 + 1)
    record = [m for k, m in found if k == "shop-a/a-lina" and isinstance(m, AgentPresence)][-1]
    assert dict(record.proficiency) == {"orders": 5, "presales": 3}
    assert list(record.languages) == ["zh", "ja"]

    # leaving a group drops its level; the view lists what is left
    resp = await presence.http.patch(f"{A}/agents/a-lina", json={"groups": ["presales"]}, headers=auth(OPS_A))
    assert resp.status_code == 200, resp.text
    assert resp.json()["proficiency"] == {"presales": 3}
    audit = (await presence.http.get(f"{A}/audit", headers=auth(OPS_A))).json()
    assert audit[0]["action"] == "update_agent"
    assert audit[0]["params"] == {"agent_id": "a-lina", "groups": ["presales"], "proficiency": {"presales": 3}}
    assert audit[1]["params"]["proficiency"] == {"presales": 3, "orders": 5}

    for body in [
        {"proficiency": {"presales": 6}},
        {"proficiency": {"presales": 0}},
        {"proficiency": {"presales": "5"}},
        {"proficiency": {"orders": 4}},  # no longer one of her groups
        {"groups": ["logistics"], "proficiency": {"presales": 4}},
        {"languages": ["cn"]},
        {"languages": ["ZH"]},
    ]:
        resp = await presence.http.patch(f"{A}/agents/a-lina", json=body, headers=auth(OPS_A))
        assert resp.status_code == 422, (body, resp.text)
    lina = await presence.store.get_agent("shop-a", "a-lina")
    assert lina is not None
    assert (lina.own_groups, lina.proficiency, lina.languages) == (["presales"], {"presales": 3}, ["zh", "ja"])

    helper = {"agent_id": "tmp-ja", "groups": ["cross_border"], "languages": ["ja", "en"],
              "proficiency": {"cross_border": 4}}  # fmt: skip
    resp = await presence.http.post(f"{A}/temporary-agents", json={"agents": [helper]}, headers=auth(OPS_A))
    assert resp.status_code == 201, resp.text
    view = (await presence.http.get(f"{A}/agents", params={"group": "cross_border"}, headers=auth(OPS_A))).json()
    assert {a["agent_id"]: a["proficiency"] for a in view["agents"]} == {"a-emma": {"cross_border": 5, "presales": 2},
                                                                        "tmp-ja": {"cross_border": 4}}  # fmt: skip
    bad = {**helper, "proficiency": {"complaints": 5}}
    resp = await presence.http.post(f"{A}/temporary-agents", json={"agents": [bad]}, headers=auth(OPS_A))
    assert resp.status_code == 422


async def test_fields_out_of_bounds_are_refused_in_the_error_shape(presence: Presence) -> None:
    # The value: stored, it stopped every sweep. Refused now, with every problem named, nothing changed.
    lina = f"{A}/agents/a-lina"
    resp = await presence.http.patch(lina, json={"capacity": {"chat": 41865718795}}, headers=auth(OPS_A))
    assert resp.status_code == 422, resp.text
    assert resp.json() == {
        "error": "invalid_field",
        "detail": ["body.capacity.chat: Input should be less than or equal to 1000"],
    }
    state = await presence.store.get_agent("shop-a", "a-lina")
    assert state is not None and state.capacity["chat"] < 1000
    # A control character or a lone surrogate in any string is no JSON text the gate takes (runtime/input_limits):
    # 400 invalid_text, before the schema is looked at.
    resp = await presence.http.patch(lina, json={"display_name": "nul\u0000"}, headers=auth(OPS_A))
    assert (resp.status_code, resp.json()["error"]) == (400, "invalid_text"), resp.text
    for body in [
        {"display_name": "x" * 129},
        {"groups": [f"g{i}" for i in range(65)]},
        {"groups": ["{presales}"]},
        {"capacity": {"chat": -1}},
    ]:
        resp = await presence.http.patch(lina, json=body, headers=auth(OPS_A))
        assert (resp.status_code, resp.json()["error"]) == (422, "invalid_field"), (body, resp.text)
    # a lone surrogate, escaped as JSON allows
    raw = b'{"display_name": "\\ud800"}'
    resp = await presence.http.patch(lina, content=raw, headers={**auth(OPS_A), "Content-Type": "application/json"})
    assert (resp.status_code, resp.json()["error"]) == (400, "invalid_text"), resp.text
    resp = await presence.http.patch(lina, content=b"{", headers={**auth(OPS_A), "Content-Type": "application/json"})
    assert resp.json()["error"] == "invalid_json" and "not JSON" in resp.json()["detail"]
    assert resp.status_code == 400
    # every other answer of the API carries the same shape
    expected = {
        ("GET", f"{A}/agents", None): (401, "unauthorized"),
        ("GET", "/v1/operator/tenants/shop-b/agents", OPS_A): (403, "forbidden"),
        ("PATCH", f"{A}/agents/nobody", OPS_A): (404, "not_found"),
        ("POST", f"{A}/surge/activate", OPS_A): (404, "not_found"),
        ("DELETE", f"{A}/surge/schedules/none", OPS_A): (409, "conflict"),
        ("GET", "/v1/operator/tenants/%7Bshop%7D/agents", OPS_A): (422, "invalid_field"),
    }
    bodies = {"PATCH": {"display_name": "x"}, "POST": {"profile": "nosuch"}}
    for (method, path, token), (code, kind) in expected.items():
        headers = auth(token) if token else {}
        resp = await presence.http.request(method, path, json=bodies.get(method), headers=headers)
        assert (resp.status_code, resp.json()["error"]) == (code, kind), (method, path, resp.text)
        assert isinstance(resp.json()["detail"], (str, list))
