"""The router's decisions against a real Redis: what agents' desktops get, what waits, what the events say."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from switchboard.contracts import AgentCommand, AgentCommandType, AgentStatus, DeskEventType, RoutingEventType
from switchboard.router.engine import MemorySink, Router
from switchboard.router.reload import ConfigStore
from switchboard.router.upkeep import Upkeep
from switchboard.routing.config import OfferPolicy, TenantRouting
from switchboard.runtime.errors import BrokerUnavailable
from switchboard.state.keys import Keys
from tests.redis_cluster import on_both_redis_backends
from tests.router_support import (
    check_invariants,
    message,
    now_ms,
    outbox,
    presence_record,
    put_agent,
    read_state,
    set_status,
)

pytestmark = [pytest.mark.broker, on_both_redis_backends]

T = "tmall-flagship"
T_QUEUED = RoutingEventType.ROUTING_EVENT_QUEUED


@dataclass
class Env:
    redis: Redis
    keys: Keys
    store: ConfigStore
    router: Router
    upkeep: Upkeep
    sink: MemorySink
    clock: list[int] = field(default_factory=lambda: [now_ms()])
    sent: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    def config(self, tenant: str = T) -> TenantRouting:
        config = self.store.get(tenant)
        assert config is not None
        return config

    def use_offers(self, tenant: str = T, timeout_s: float = 20, max_misses: int = 2) -> None:
        config = self.config(tenant)
        groups = [g.model_copy(update={"offer": None}) for g in config.skill_groups]
        offers = OfferPolicy(mode="offer", timeout_s=timeout_s, max_misses=max_misses)
        self.store.put(config.model_copy(update={"offers": offers, "skill_groups": groups}))

    async def send(self, tenant: str, conv: str, mid: str, text: str = "这个尺码合适吗", **kw: str) -> None:
        self.sent.setdefault(tenant, {}).setdefault(conv, []).append(mid)
        assert await self.router.handle_inbound([message(tenant, conv, mid, text, **kw)]) == []

    async def command(self, conv: str, agent: str, kind: str, tenant: str = T, **kw: object) -> None:
        epoch = int(await self.redis.hget(self.keys.conversation(tenant, conv), "epoch") or 0)
        kw.setdefault("epoch", epoch)
        cmd = AgentCommand(
            command_id=f"cmd-{conv}-{kind}-{uuid.uuid4().hex}",
            tenant_id=tenant,
            agent_id=agent,
            conversation_id=conv,
            type=getattr(AgentCommandType, f"AGENT_COMMAND_{kind.upper()}"),
            **kw,  # type: ignore[arg-type]
        )
        assert await self.router.handle_commands([cmd]) == []

    async def conv(self, conv: str, tenant: str = T) -> dict[str, str]:
        raw = await self.redis.hgetall(self.keys.conversation(tenant, conv))
        return {k.decode(): v.decode() for k, v in raw.items()}

    async def desk(self, agent: str, tenant: str = T) -> list[tuple[str, str, str]]:
        return [
            (DeskEventType.Name(e.type).removeprefix("DESK_EVENT_"), e.conversation_id, e.message.message_id)
            for e in await outbox(self.redis, self.keys, tenant, agent)
        ]

    async def check(self, tenant: str = T) -> None:
        config = self.config(tenant)
        sent = self.sent.get(tenant, {})
        check_invariants(await read_state(self.redis, self.keys, config, set(sent)), config, sent, now_ms=self.clock[0])

    def events(self, kind: str) -> list[str]:
        wanted = getattr(RoutingEventType, f"ROUTING_EVENT_{kind.upper()}")
        return [e.conversation_id for e in self.sink.events if e.type == wanted]


@pytest.fixture
async def env(redis: Redis, prefix: str, repo_root: Path) -> AsyncIterator[Env]:
    keys = Keys(prefix.rstrip("."))
    store = ConfigStore(repo_root / "config" / "routing")
    store.poll()
    sink = MemorySink()
    clock = [now_ms()]
    router = Router(redis, keys, store, sink, instance="test", clock=lambda: clock[0])
    yield Env(redis, keys, store, router, router.upkeep, sink, clock)


async def test_least_loaded_assignment_then_later_messages_follow_the_owner_in_order(env: Env) -> None:
    await put_agent(env.redis, env.keys, T, "lina", ["presales"], chat=2)
    await put_agent(env.redis, env.keys, T, "wei", ["presales"], chat=2)
    await env.send(T, "c1", "m1")
    await env.send(T, "c2", "m2")
    await env.send(T, "c1", "m1b", "还有别的颜色吗")
    await env.send(T, "c1", "m1c", "好的")
    owner = (await env.conv("c1"))["owner"]
    other = "wei" if owner == "lina" else "lina"
    assert await env.desk(owner) == [("ASSIGNED", "c1", "m1"), ("MESSAGE", "c1", "m1b"), ("MESSAGE", "c1", "m1c")]
    assert await env.desk(other) == [("ASSIGNED", "c2", "m2")]
    assigned = [e for e in env.sink.events if e.type == RoutingEventType.ROUTING_EVENT_ASSIGNED]
    assert assigned[0].rule_matched == "product-card"
    assert assigned[1].candidates[-1].chosen and assigned[1].candidates[-1].step == "least_loaded"
    await env.check()


async def test_queue_positions_then_close_drains_highest_score_first(env: Env) -> None:
    await put_agent(env.redis, env.keys, T, "lina", ["presales"], chat=1)
    await env.send(T, "c1", "m1")
    await env.send(T, "c2", "m2")
    await env.send(T, "c3", "m3", tier="88VIP")
    queued = [e for e in env.sink.events if e.type == RoutingEventType.ROUTING_EVENT_QUEUED]
    assert [(e.conversation_id, e.queue_position) for e in queued] == [("c2", 1), ("c3", 1)]
    assert {c.reason for c in queued[0].candidates} == {"at_capacity"}
    await env.check()
    await env.command("c1", "lina", "close", wrap_up_code="resolved")
    # The 88VIP customer jumps the queue; the conversation waiting longer comes next.
    assert await env.desk("lina") == [("ASSIGNED", "c1", "m1"), ("CLOSED", "c1", ""), ("ASSIGNED", "c3", "m3")]
    closed = [e for e in env.sink.events if e.type == RoutingEventType.ROUTING_EVENT_CLOSED]
    assert closed[0].wrap_up_code == "resolved"
    await env.check()


async def test_conversations_opened_in_one_batch_queue_in_their_order_of_arrival(env: Env) -> None:
    """A batch holds several partitions one after another, not in arrival order: the queue still is."""
    await put_agent(env.redis, env.keys, T, "lina", ["presales"], chat=1)
    await env.send(T, "c0", "m0")
    arrivals = {"c1": 40, "c2": 3, "c3": 25, "c4": 10}  # ms before the router's clock; c1 came first
    batch = []
    for conv, before in arrivals.items():
        m = message(T, conv, f"m-{conv}", "这个尺码合适吗")
        m.received_at.FromMilliseconds(env.clock[0] - before)
        batch.append(m)
        env.sent[T][conv] = [m.message_id]
    assert await env.router.handle_inbound(batch[::-1]) == []
    queue = await env.redis.zrange(env.keys.queue_channel(T, "presales", "chat"), 0, -1)
    assert [c.decode() for c in queue] == ["c1", "c3", "c4", "c2"]
    # Each position as it was when that conversation joined (handled c4, c3, c2, c1): its place among the earlier.
    queued = [(e.conversation_id, e.queue_position) for e in env.sink.events if e.type == T_QUEUED]
    assert queued == [("c4", 1), ("c3", 1), ("c2", 3), ("c1", 1)]
    await env.check()


async def test_offer_accept_decline_and_timeout_with_misses_setting_the_agent_away(env: Env) -> None:
    env.use_offers(max_misses=2)
    await put_agent(env.redis, env.keys, T, "lina", ["presales"])
    await env.send(T, "c1", "m1")
    await env.send(T, "c1", "m1b", "在吗")
    assert (await env.conv("c1"))["state"] == "offered"
    assert await env.desk("lina") == [("OFFER", "c1", "m1")]
    await env.command("c1", "lina", "accept")
    assert await env.desk("lina") == [("OFFER", "c1", "m1"), ("ASSIGNED", "c1", "m1"), ("MESSAGE", "c1", "m1b")]
    await env.check()

    await put_agent(env.redis, env.keys, T, "wei", ["presales"])
    await env.redis.hset(env.keys.agent(T, "wei"), "last_assigned_ms", 1)  # idles longest: offered first
    await env.redis.hset(env.keys.agent(T, "lina"), "last_assigned_ms", 2)
    await env.send(T, "c2", "m2")
    await env.command("c2", "wei", "decline", reason="busy with a call")
    declined = [e for e in env.sink.events if e.type == RoutingEventType.ROUTING_EVENT_DECLINED]
    assert declined[0].decline_reason == "busy with a call"
    assert (await env.conv("c2"))["offer_agent"] == "lina"
    await env.check()

    # Lina lets two offers time out: the sweep revokes them and sets her away.
    env.clock[0] += 21_000
    await env.upkeep.sweep()
    assert ("REVOKED", "c2", "") in await env.desk("lina")
    # Wei's decline passed him over for the back-off only: with lina out of the running, c2 goes back to him.
    assert (await env.conv("c2"))["offer_agent"] == "wei"
    await env.send(T, "c3", "m3")
    await env.command("c3", "wei", "decline", reason="no")
    assert (await env.conv("c3"))["offer_agent"] == "lina"
    env.clock[0] += 21_000
    await env.upkeep.sweep()
    agent = await env.redis.hgetall(env.keys.agent(T, "lina"))
    assert agent[b"status"] == b"away"
    assert agent[b"status_changed_by"] == b"router"
    assert env.sink.away == [(T, "lina")]
    status = [e for e in await outbox(env.redis, env.keys, T, "lina") if e.type == DeskEventType.DESK_EVENT_STATUS]
    assert status[-1].status == AgentStatus.AGENT_STATUS_AWAY and status[-1].attributes["changed_by"] == "router"
    assert await env.redis.zscore(env.keys.presence_pending(T), "lina") is not None
    assert env.events("timed_out") == ["c2", "c2", "c3"]
    await env.check()


async def test_stale_epoch_and_stale_session_commands_change_nothing(env: Env) -> None:
    await put_agent(env.redis, env.keys, T, "lina", ["presales"])
    await env.send(T, "c1", "m1")
    epoch = int((await env.conv("c1"))["epoch"])
    await env.command("c1", "lina", "close", epoch=epoch - 1)
    await env.command("c1", "lina", "close", epoch=epoch, session_epoch=0)
    assert (await env.conv("c1"))["state"] == "closed"
    await env.send(T, "c2", "m2")
    await env.redis.hset(env.keys.agent(T, "lina"), "session_epoch", 5)
    await env.command("c2", "lina", "close", session_epoch=4)
    assert (await env.conv("c2"))["state"] == "assigned"
    await env.check()


async def test_transfer_to_agent_and_to_group(env: Env) -> None:
    await put_agent(env.redis, env.keys, T, "lina", ["presales"])
    await put_agent(env.redis, env.keys, T, "wei", ["after_sales"])
    await env.send(T, "c1", "m1")
    await env.command("c1", "lina", "transfer", transfer_to_agent="wei")
    assert (await env.conv("c1"))["owner"] == "wei"
    await env.send(T, "c1", "m1b", "退货怎么弄")
    # The new owner gets the conversation so far with the transfer, then what follows.
    assert await env.desk("wei") == [("ASSIGNED", "c1", "m1"), ("MESSAGE", "c1", "m1b")]
    assert await env.desk("lina") == [("ASSIGNED", "c1", "m1"), ("TRANSFERRED", "c1", "")]
    await env.command("c1", "wei", "transfer", transfer_to_group="presales")
    assert (await env.conv("c1"))["owner"] == "lina"
    assert (await env.desk("lina"))[2:] == [("ASSIGNED", "c1", "m1"), ("MESSAGE", "c1", "m1b")]
    assert env.events("transferred") == ["c1", "c1"]
    await env.check()


async def test_departed_agent_work_is_requeued_with_original_time_and_priority(env: Env) -> None:
    await put_agent(env.redis, env.keys, T, "lina", ["presales"])
    await env.send(T, "c1", "m1", tier="88VIP")
    before = await env.conv("c1")
    await put_agent(env.redis, env.keys, T, "wei", ["presales"], status="away")
    await set_status(env.redis, env.keys, T, "lina", "offline", since_ms=env.clock[0] - 61_000)
    await env.upkeep.handle_presence([presence_record(T, "lina", "offline", ["presales"])])
    after = await env.conv("c1")
    assert after["state"] == "queued"
    assert (after["enqueued_ms"], after["priority"]) == (before["enqueued_ms"], before["priority"])
    assert ("REVOKED", "c1", "") in await env.desk("lina")
    await env.check()
    await set_status(env.redis, env.keys, T, "wei", "available")
    await env.upkeep.handle_presence([presence_record(T, "wei", "available", ["presales"])])
    assert (await env.conv("c1"))["owner"] == "wei"
    assert env.events("requeued") == ["c1"]
    await env.check()


async def test_offline_within_grace_keeps_the_work(env: Env) -> None:
    await put_agent(env.redis, env.keys, T, "lina", ["presales"])
    await env.send(T, "c1", "m1")
    await set_status(env.redis, env.keys, T, "lina", "offline", since_ms=env.clock[0] - 5_000)
    await env.upkeep.handle_presence([presence_record(T, "lina", "offline", ["presales"])])
    await env.upkeep.sweep()
    assert (await env.conv("c1"))["owner"] == "lina"
    env.clock[0] += 60_000
    await env.upkeep.sweep()
    assert (await env.conv("c1"))["state"] == "queued"


async def test_phone_call_takes_a_phone_slot_and_blocks_chats(env: Env) -> None:
    await put_agent(
        env.redis, env.keys, T, "lina", ["presales", "general"], chat=3, phone=1
    )  # a call nobody classified: general
    await env.send(T, "p1", "call-start", "", channel="phone")
    await env.send(T, "c1", "m1")
    assert (await env.conv("p1"))["owner"] == "lina"
    assert (await env.conv("c1"))["state"] == "queued"
    await env.check()
    await env.command("p1", "lina", "close", wrap_up_code="call_done")
    assert (await env.conv("c1"))["owner"] == "lina"
    await env.check()


async def test_redelivered_messages_change_nothing_twice_and_repeat_their_events(env: Env) -> None:
    await put_agent(env.redis, env.keys, T, "lina", ["presales"])
    batch = [message(T, "c1", "m1"), message(T, "c1", "m2", "颜色")]
    await env.router.handle_inbound(batch)
    first = [(e.type, e.agent_id, e.epoch) for e in env.sink.events]
    await env.router.handle_inbound(batch)
    assert [(e.type, e.agent_id, e.epoch) for e in env.sink.events] == first * 2
    assert await env.desk("lina") == [("ASSIGNED", "c1", "m1"), ("MESSAGE", "c1", "m2")]
    env.sent[T] = {"c1": ["m1", "m2"]}
    await env.check()


async def test_overflow_ring_takes_a_conversation_that_waited_past_after_s(env: Env) -> None:
    await put_agent(env.redis, env.keys, T, "lina", ["presales"], chat=1)
    await put_agent(env.redis, env.keys, T, "gen", ["general"])
    await env.send(T, "c1", "m1")
    await env.send(T, "c2", "m2")
    assert (await env.conv("c2"))["state"] == "queued"
    await env.upkeep.sweep()
    assert (await env.conv("c2"))["state"] == "queued"
    env.clock[0] += 91_000
    await env.upkeep.sweep()
    assert (await env.conv("c2"))["owner"] == "gen"
    await env.check()


async def test_returning_customer_goes_back_to_last_agent(env: Env) -> None:
    await put_agent(env.redis, env.keys, T, "lina", ["presales"])
    await put_agent(env.redis, env.keys, T, "wei", ["presales"])
    await env.send(T, "c1", "m1", customer="buyer-9")
    first = (await env.conv("c1"))["owner"]
    await env.command("c1", first, "close", wrap_up_code="resolved")
    await env.send(T, "c2", "m2", customer="buyer-9")
    assert (await env.conv("c2"))["owner"] == first
    assigned = [e for e in env.sink.events if e.type == RoutingEventType.ROUTING_EVENT_ASSIGNED]
    assert assigned[-1].candidates[-1].step == "returning"


async def test_tenants_never_share_agents_queues_or_desks(env: Env) -> None:
    await put_agent(env.redis, env.keys, T, "agent-1", ["presales"], chat=1)
    await put_agent(env.redis, env.keys, "small-shop", "agent-1", ["service"], chat=1)
    await env.send(T, "c1", "m1")
    await env.send("small-shop", "c1", "s1", "退款")
    await env.send(T, "c2", "m2")
    assert await env.desk("agent-1") == [("ASSIGNED", "c1", "m1")]
    assert await env.desk("agent-1", "small-shop") == [("OFFER", "c1", "s1")]
    assert (await env.conv("c2"))["state"] == "queued"
    for key in await env.redis.keys(env.keys.tenant_pattern("small-shop")):
        assert b"{small-shop}" in key
    await env.check()
    await env.check("small-shop")


async def test_unknown_tenant_and_missing_ids_are_refused(env: Env) -> None:
    refused = await env.router.handle_inbound([message("nobody", "c1", "m1"), message(T, "", "m2")])
    assert [reason for _, reason in refused] == [
        "no routing config for tenant 'nobody'",
        "inbound message without conversation_id or message_id",
    ]


async def test_weighted_units_and_a_surge_multiplier_drain_at_once(env: Env) -> None:
    config = env.config()
    units = config.capacity.model_copy(update={"mode": "units", "units_per_agent": 4})
    env.store.put(config.model_copy(update={"capacity": units}))
    await put_agent(env.redis, env.keys, T, "lina", ["presales"], chat=5, email=5)
    await env.send(T, "c1", "m1")  # chat: 2 units
    await env.send(T, "e1", "m2", channel="email")  # email: 1 unit
    await env.send(T, "c2", "m3")  # another chat would need 5 of 4 units
    assert (await env.conv("c2"))["state"] == "queued"
    await env.check()
    # A surge profile doubles capacity; presence publishes the record and the router drains at once.
    await env.redis.hset(env.keys.agent(T, "lina"), "multiplier", 2)
    await env.upkeep.handle_presence([presence_record(T, "lina", "available", ["presales"], 2.0)])
    assert (await env.conv("c2"))["owner"] == "lina"
    await env.check()


async def test_sweep_decisions_that_missed_the_routing_topic_are_sent_later(env: Env) -> None:
    await put_agent(env.redis, env.keys, T, "lina", ["presales"], status="away")
    await env.send(T, "c1", "m1")

    class Down(MemorySink):
        async def routing(self, events: object) -> None:
            raise BrokerUnavailable("broker did not acknowledge")

    env.router.context.sink = Down()
    await set_status(env.redis, env.keys, T, "lina", "available")
    with pytest.raises(BrokerUnavailable):
        await env.upkeep.handle_presence([presence_record(T, "lina", "available", ["presales"])])
    assert (await env.conv("c1"))["owner"] == "lina"  # the desk already has it; only the event is owed
    assert env.events("assigned") == []
    env.router.context.sink = env.sink
    env.clock[0] += 6_000
    await env.upkeep.sweep()
    assert env.events("assigned") == ["c1"]
    assert await env.redis.zcard(env.keys.routing_unsent(T)) == 0


async def test_a_plan_on_a_stale_snapshot_is_not_applied_and_the_group_is_drained(env: Env) -> None:
    """Another router took a slot of the planned agent since the snapshot: the script does not apply the plan (the
    agent's used slots changed), queues the conversation and the router drains the group at once, so the agent
    with room left takes it and nobody goes over capacity."""
    await put_agent(env.redis, env.keys, T, "a", ["presales"], chat=1)
    await put_agent(env.redis, env.keys, T, "b", ["presales"], chat=2)
    clock = env.clock
    stale = Router(
        env.redis, env.keys, env.store, env.sink, instance="stale", snapshot_ttl_s=3600, clock=lambda: clock[0]
    )
    await stale.handle_inbound([message(T, "w0", "w0")])  # its snapshot: a full, b with 0 of 2
    assert (await env.conv("w0"))["owner"] == "a"
    await env.send(T, "c0", "m0")  # a fresh read: b takes it
    assert (await env.conv("c0"))["owner"] == "b"
    await stale.handle_inbound([message(T, "c1", "m1")])  # planned on b with 0 used: stale
    assert (await env.conv("c1"))["owner"] == "b"
    queued = [
        e for e in env.sink.events if e.conversation_id == "c1" and e.type == RoutingEventType.ROUTING_EVENT_QUEUED
    ]
    assert queued and any(v.reason == "changed_since_plan" and v.agent_id == "b" for v in queued[0].candidates)
    env.sent.setdefault(T, {})["w0"] = ["w0"]
    env.sent[T]["c1"] = ["m1"]
    await env.check()


async def test_a_shops_only_agent_who_declined_or_missed_is_offered_it_again_after_the_back_off(env: Env) -> None:
    """A decline or a miss passes the agent over for `reoffer_after_s` only; the sweep then offers it again, and
    `max_misses` misses in a row set the agent away (the intended way out)."""
    env.use_offers(timeout_s=20, max_misses=2)
    assert env.config().offers.reoffer_after_s == 5
    await put_agent(env.redis, env.keys, T, "lina", ["presales"])
    await env.send(T, "c1", "m1")
    await env.command("c1", "lina", "decline", reason="on a call")
    assert (await env.conv("c1"))["state"] == "queued"
    await env.upkeep.sweep()
    assert (await env.conv("c1"))["state"] == "queued"  # within the back-off
    await env.check()
    env.clock[0] += 5_001
    await env.upkeep.sweep()
    assert (await env.conv("c1"))["offer_agent"] == "lina"
    await env.check()

    env.clock[0] += 20_001
    await env.upkeep.sweep()  # first miss: revoked, waits out the back-off, then comes back to her
    assert (await env.conv("c1"))["state"] == "queued"
    await env.check()
    env.clock[0] += 5_001
    await env.upkeep.sweep()
    assert (await env.conv("c1"))["offer_agent"] == "lina"
    await env.send(T, "c1", "m1b", "在吗")
    await env.command("c1", "lina", "accept")
    assert (await env.desk("lina"))[-2:] == [("ASSIGNED", "c1", "m1"), ("MESSAGE", "c1", "m1b")]
    await env.check()

    await env.send(T, "c2", "m2")
    for _ in range(2):
        env.clock[0] += 20_001
        await env.upkeep.sweep()
        env.clock[0] += 5_001
        await env.upkeep.sweep()
    assert (await env.redis.hget(env.keys.agent(T, "lina"), "status")) == b"away"
    assert (await env.conv("c2"))["state"] == "queued"
    assert env.events("timed_out") == ["c1", "c2", "c2"]
    await env.check()


async def test_a_reassigned_conversation_reaches_its_new_owner_with_every_message(env: Env) -> None:
    """Shift change: the owner closes the desktop with work in hand; a message arrives during the grace period and
    another while the conversation waits; the next owner gets all of them once, in order, after ASSIGNED."""
    await put_agent(env.redis, env.keys, T, "lina", ["presales"])
    await put_agent(env.redis, env.keys, T, "wei", ["presales"], status="away")
    await env.send(T, "c1", "m1")
    await env.send(T, "c1", "m2", "还有L码吗")
    assert (await env.conv("c1"))["owner"] == "lina"
    await set_status(env.redis, env.keys, T, "lina", "offline", since_ms=env.clock[0])
    await env.upkeep.handle_presence([presence_record(T, "lina", "offline", ["presales"])])
    await env.send(T, "c1", "m3", "人呢")  # to lina's desk, which nobody reads any more
    env.clock[0] += 61_000
    await env.upkeep.sweep()
    assert (await env.conv("c1"))["state"] == "queued"
    await env.send(T, "c1", "m4", "急")
    await env.check()
    await set_status(env.redis, env.keys, T, "wei", "available")
    await env.upkeep.handle_presence([presence_record(T, "wei", "available", ["presales"])])
    assert await env.desk("wei") == [
        ("ASSIGNED", "c1", "m1"),
        ("MESSAGE", "c1", "m2"),
        ("MESSAGE", "c1", "m3"),
        ("MESSAGE", "c1", "m4"),
    ]
    await env.send(T, "c1", "m5", "好的")
    assert (await env.desk("wei"))[-1] == ("MESSAGE", "c1", "m5")
    await env.check()


async def test_an_offer_that_timed_out_after_messages_arrived_brings_them_to_the_next_agent(env: Env) -> None:
    env.use_offers(timeout_s=20, max_misses=3)
    await put_agent(env.redis, env.keys, T, "lina", ["presales"])
    await env.redis.hset(env.keys.agent(T, "lina"), "last_assigned_ms", 1)  # idles longest: offered first
    await put_agent(env.redis, env.keys, T, "wei", ["presales"])
    await env.redis.hset(env.keys.agent(T, "wei"), "last_assigned_ms", 2)
    await env.send(T, "c1", "m1")
    await env.send(T, "c1", "m2", "在吗")
    assert (await env.conv("c1"))["offer_agent"] == "lina"
    env.clock[0] += 20_001
    await env.upkeep.sweep()
    assert (await env.conv("c1"))["offer_agent"] == "wei"
    await env.command("c1", "wei", "accept")
    assert await env.desk("wei") == [("OFFER", "c1", "m1"), ("ASSIGNED", "c1", "m1"), ("MESSAGE", "c1", "m2")]
    await env.check()


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_time_to_offer_and_to_assign_count_from_the_arrival_once_per_arrival(env: Env) -> None:
    env.use_offers(timeout_s=20, max_misses=5)
    where = {"tenant": T, "group": "presales", "channel": "chat"}
    before = {
        name: _sample(name, **where)
        for name in (
            "sb_time_to_offer_seconds_count",
            "sb_time_to_offer_seconds_sum",
            "sb_time_to_assign_seconds_count",
            "sb_time_to_assign_seconds_sum",
        )
    }
    missed = _sample("sb_offers_missed_total", tenant=T, group="presales")
    offered = _sample("sb_router_decisions_total", type="offered", tenant=T, group="presales")
    await put_agent(env.redis, env.keys, T, "lina", ["presales"], status="away")
    await env.send(T, "c1", "m1")
    assert (await env.conv("c1"))["state"] == "queued"
    # Seven seconds in line, then lina comes back and is offered it: the first offer.
    env.clock[0] += 7_000
    await set_status(env.redis, env.keys, T, "lina", "available")
    await env.upkeep.handle_presence([presence_record(T, "lina", "available", ["presales"])])
    assert (await env.conv("c1"))["offer_agent"] == "lina"
    # The offer times out after 21 s and goes to wei: a re-offer of the same arrival, not measured again.
    await put_agent(env.redis, env.keys, T, "wei", ["presales"])
    env.clock[0] += 21_000
    await env.upkeep.sweep()
    assert (await env.conv("c1"))["offer_agent"] == "wei"
    env.clock[0] += 2_000
    await env.command("c1", "wei", "accept")
    assert (await env.conv("c1"))["owner"] == "wei"

    def grown(name: str) -> float:
        return _sample(name, **where) - before[name]

    assert grown("sb_time_to_offer_seconds_count") == 1 and grown("sb_time_to_offer_seconds_sum") == 7
    assert grown("sb_time_to_assign_seconds_count") == 1 and grown("sb_time_to_assign_seconds_sum") == 30
    assert _sample("sb_offers_missed_total", tenant=T, group="presales") - missed == 1
    assert _sample("sb_router_decisions_total", type="offered", tenant=T, group="presales") - offered == 2
