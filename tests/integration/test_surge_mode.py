"""Surge mode end to end on real Redis and Kafka: presence switches a profile (by hand or on a schedule through the
operator API), the router follows it through the presence records and its sweep.

While the profile is on, its earlier overflow rings widen conversations already queued, and its generalist pool
gives pool agents the extra groups, so they take that work; at the window's end the group's own rings and the agents'
own groups are back, and what the pool agents took stays with them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from fastapi import FastAPI
from redis.asyncio import Redis

from switchboard.contracts import AgentPresence, RoutingEvent, RoutingEventType
from switchboard.presence.api import mount_operator_api
from switchboard.presence.audit import AuditLog
from switchboard.presence.control import SurgeControl
from switchboard.presence.routing_configs import RoutingConfigs
from switchboard.presence.settings import OperatorGrant
from switchboard.presence.sweep import Sweeper
from switchboard.router.engine import MemorySink, Router
from switchboard.router.reload import ConfigStore
from switchboard.routing.surge import SurgeProfile
from switchboard.runtime.kafka import RecordProducer
from switchboard.runtime.settings import ServiceSettings
from switchboard.state.agents import PresenceStore
from switchboard.state.figures import ABANDONED, ANSWERED, Outcome, record_outcomes
from switchboard.state.keys import Keys
from switchboard.state.roster import load_roster
from tests.helpers import eventually
from tests.redis_cluster import on_both_redis_backends
from tests.router_support import message, now_ms, presence_backlog

pytestmark = [pytest.mark.broker, on_both_redis_backends]

T = "shop-a"
TOKEN = "ops-a-token-0123456789"
A = f"/v1/operator/tenants/{T}"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}

# Pre-sales overflows to the generalists only after ten minutes; nobody is in `general` outside the surge.
ROUTING = f"""
tenant: {T}
default_group: presales
offline_grace_s: 0
skill_groups:
  - name: presales
    avg_handle_s: 60
    overflow:
      - {{group: general, after_s: 600}}
  - {{name: orders}}
  - {{name: after_sales}}
  - {{name: logistics}}
  - {{name: complaints}}
  - {{name: promotions}}
  - {{name: cross_border}}
  - {{name: general}}
"""
# 大促: pre-sales overflows to the generalists as soon as its estimated wait passes 45 s, and the after-sales agents
# form the generalist pool.
DOUBLE11 = {
    "description": "双11 0点",
    "overflow": {"presales": [{"group": "general", "estimated_wait_over_s": 45}]},
    "pools": {"after_sales": ["general"]},
}


@dataclass
class Surge:
    """Presence (store, controls, operator API) and a router on one Redis, joined by the presence topic."""

    presence: PresenceStore
    control: SurgeControl
    http: httpx.AsyncClient
    router: Router
    sink: MemorySink
    consumer: AIOKafkaConsumer

    async def deliver_presence(self) -> list[AgentPresence]:
        """Hand the router every presence record on the topic not yet handed over."""
        records = await presence_backlog(self.consumer)
        await self.router.upkeep.handle_presence(records)
        return records

    async def conv(self, conv: str) -> dict[str, str]:
        raw = await self.presence.redis.hgetall(self.presence.keys.conversation(T, conv))
        return {k.decode(): v.decode() for k, v in raw.items()}

    async def groups(self, agent_id: str) -> list[str]:
        state = await self.presence.get_agent(T, agent_id)
        assert state is not None
        return state.groups

    async def send(self, conv: str) -> None:
        assert await self.router.handle_inbound([message(T, conv, f"m-{conv}", "这个尺码合适吗")]) == []

    def events(self, conv: str) -> list[RoutingEvent]:
        return [e for e in self.sink.events if e.conversation_id == conv]


@pytest.fixture
async def surge(settings: ServiceSettings, redis: Redis, tmp_path: Path) -> AsyncIterator[Surge]:
    (tmp_path / "routing").mkdir()
    (tmp_path / "routing" / f"{T}.yaml").write_text(ROUTING, encoding="utf-8")
    configs = ConfigStore(tmp_path / "routing")
    configs.poll()
    assert configs.get(T) is not None, configs.errors
    keys = Keys(settings.key_prefix)
    sink = MemorySink()
    router = Router(redis, keys, configs, sink, instance="test")
    producer = RecordProducer(settings)
    consumer = AIOKafkaConsumer(
        settings.topic_prefix + "sb.presence.v1",
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await producer.start()
    await consumer.start()
    try:
        await eventually(_assigned(consumer), timeout=10, what="presence topic assigned")
        store = PresenceStore(redis, keys, producer)
        control = SurgeControl(store, AuditLog(redis, keys), RoutingConfigs(tmp_path / "routing"))
        await store.load_roster(load_roster())
        app = FastAPI()
        mount_operator_api(app, control, [OperatorGrant(name="ops-a", token=TOKEN, tenants=[T])])
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://presence") as http:
            stack = Surge(store, control, http, router, sink, consumer)
            # the after-sales agents are at work; pre-sales is unstaffed (its agents are offline)
            for agent_id in ("a-wei", "a-min"):
                await store.login(T, agent_id)
            await stack.deliver_presence()
            yield stack
    finally:
        await consumer.stop()
        await producer.stop()


def _assigned(consumer: AIOKafkaConsumer) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        if not consumer.assignment():
            await consumer.getmany(timeout_ms=100)
        return bool(consumer.assignment())

    return check


@contextlib.asynccontextmanager
async def running(stack: Surge) -> AsyncIterator[None]:
    """Presence's sweep (schedules) and the router's loops (presence records, sweep) in the background."""
    sweeper = Sweeper(stack.presence, stack.control, grace_s=60, interval_s=0.05)
    stopping = asyncio.Event()

    async def router_loop() -> None:
        while not stopping.is_set():
            await stack.deliver_presence()
            await stack.router.upkeep.sweep()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), 0.1)

    tasks = [asyncio.create_task(sweeper.run()), asyncio.create_task(router_loop())]
    try:
        yield
    finally:
        sweeper.stop()
        stopping.set()
        await asyncio.gather(*tasks)


async def test_scheduled_profile_widens_queued_work_to_a_pool_and_ends(surge: Surge) -> None:
    resp = await surge.http.put(f"{A}/surge/profiles/double11", json=DOUBLE11, headers=HEADERS)
    assert resp.status_code == 200, resp.text
    await surge.send("c1")
    await surge.send("c2")
    await surge.router.upkeep.sweep()
    for conv in ("c1", "c2"):
        assert (await surge.conv(conv))["state"] == "queued"
        assert (await surge.conv(conv))["queues"] == "presales"  # the group's own ring waits ten minutes
    assert {e.surge_profile for e in surge.sink.events} == {""}

    start = datetime.now(UTC) + timedelta(seconds=1.5)
    end = start + timedelta(seconds=4)
    window = {"profile": "double11", "start": start.isoformat(), "end": end.isoformat()}
    resp = await surge.http.post(f"{A}/surge/schedules", json=window, headers=HEADERS)
    assert resp.status_code == 201, resp.text

    async with running(surge):

        async def taken_by_the_pool() -> bool:
            owners = [(await surge.conv(c)).get("owner") for c in ("c1", "c2")]
            return all(o in ("a-wei", "a-min") for o in owners)

        await eventually(taken_by_the_pool, timeout=15, what="queued pre-sales work taken by the pool")
        assert surge.router.context.configs.surge.name(T) == "double11"
        assert "general" in await surge.groups("a-wei")
        for conv in ("c1", "c2"):
            widened = [e for e in surge.events(conv) if e.type == RoutingEventType.ROUTING_EVENT_QUEUED][-1]
            assert widened.skill_group == "general"
            assert widened.surge_profile == "double11"
            assert any(r.startswith("overflow:general:estimated_wait=") for r in widened.reasons), widened.reasons
            taken = surge.events(conv)[-1]
            assert taken.type == RoutingEventType.ROUTING_EVENT_ASSIGNED
            assert taken.surge_profile == "double11"

        async def ended() -> bool:
            return (
                surge.router.context.configs.surge.name(T) == ""
                and await surge.groups("a-wei") == ["after_sales", "logistics"]
                and await surge.groups("a-min") == ["complaints", "after_sales"]
            )

        await eventually(ended, timeout=15, what="the window's end")
        assert await surge.presence.group_members(T, "general") == []
        # what the pool agents took stays with them
        for conv in ("c1", "c2"):
            assert (await surge.conv(conv))["owner"] in ("a-wei", "a-min")
        # the group's own rings again: a new pre-sales conversation waits in pre-sales only (under the profile its
        # estimated wait of 60 s would have widened it at once)
        await surge.send("c3")
        await asyncio.sleep(1.0)  # several sweeps
        c3 = await surge.conv("c3")
        assert (c3["state"], c3["queues"]) == ("queued", "presales")
        assert {e.surge_profile for e in surge.events("c3")} == {""}

    audit = (await surge.http.get(f"{A}/audit", headers=HEADERS)).json()
    assert [e["action"] for e in audit[:4]] == [
        "deactivate_profile",
        "activate_profile",
        "schedule_profile",
        "put_profile",
    ]


TRIGGERS = {
    "estimated_wait": ({"group": "general", "estimated_wait_over_s": 45}, "overflow:general:estimated_wait=60s"),
    "service_level": ({"group": "general", "service_level_below": 0.8}, "overflow:general:service_level=0.25"),
    "after_s": ({"group": "general", "after_s": 0}, "overflow:general:waited="),
}


@pytest.mark.parametrize("trigger", sorted(TRIGGERS))
async def test_a_switch_seen_in_a_presence_record_reevaluates_queued_work_for_every_trigger(
    surge: Surge, trigger: str
) -> None:
    ring, reason = TRIGGERS[trigger]
    profile = {**DOUBLE11, "overflow": {"presales": [ring]}}
    await surge.control.put_profile(T, "double11", SurgeProfile.model_validate(profile), "operator:test")
    # pre-sales answered one customer in time and lost three in the last minutes: service level 0.25
    now = now_ms()
    outcomes = [Outcome(ANSWERED, "old-1", "presales", "chat", now - 65_000, now - 60_000)]
    outcomes += [Outcome(ABANDONED, f"gone-{i}", "presales", "chat", now - 90_000, now - 30_000) for i in range(3)]
    await record_outcomes(surge.presence.redis, surge.presence.keys, T, outcomes)
    await surge.send("c1")
    assert (await surge.conv("c1"))["queues"] == "presales"
    await surge.control.activate(T, "double11", "operator:test")
    # no router sweep: the pool agents' records, stamped with the profile now in force, are enough
    records = await surge.deliver_presence()
    assert {r.surge_profile for r in records} == {"double11"}
    widened = [e for e in surge.events("c1") if e.type == RoutingEventType.ROUTING_EVENT_QUEUED][-1]
    assert (widened.skill_group, widened.surge_profile) == ("general", "double11")
    assert widened.reasons[-1].startswith(reason), widened.reasons
    assert (await surge.conv("c1"))["owner"] in ("a-wei", "a-min")
    await surge.control.deactivate(T, "operator:test")
    records = await surge.deliver_presence()
    assert {r.surge_profile for r in records} == {""}
    assert surge.router.context.configs.surge.name(T) == ""
    assert surge.router.context.configs.get(T) is surge.router.context.configs.base(T)


async def test_the_profile_in_force_redefined_reevaluates_queued_work_on_the_next_sweep(surge: Surge) -> None:
    late = {"overflow": {"presales": [{"group": "general", "estimated_wait_over_s": 3600}]}}
    await surge.control.put_profile(T, "double11", SurgeProfile.model_validate(late), "operator:test")
    await surge.control.activate(T, "double11", "operator:test")
    await surge.deliver_presence()
    await surge.router.upkeep.sweep()
    await surge.send("c1")
    await surge.router.upkeep.sweep()
    assert (await surge.conv("c1"))["queues"] == "presales"
    # the operator makes its overflow earlier: same name, so only the sweep's read sees it
    early = {"overflow": {"presales": [{"group": "general", "estimated_wait_over_s": 45}]}}
    await surge.control.put_profile(T, "double11", SurgeProfile.model_validate(early), "operator:test")
    await surge.router.upkeep.sweep()
    assert (await surge.conv("c1"))["queues"] == "presales,general"
    assert surge.events("c1")[-1].reasons[-1] == "overflow:general:estimated_wait=60s"
