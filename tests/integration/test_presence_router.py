"""Presence and router together on real Redis and Kafka: the router reacts to the records presence publishes.

Lost heartbeats send an agent's conversations back to the queue; a surge factor lets a waiting conversation in at
once. The router runs in-process; its presence consumer is stood in for by reading the presence topic here.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from redis.asyncio import Redis

from switchboard.contracts import AgentPresence
from switchboard.presence.audit import AuditLog
from switchboard.presence.control import SurgeControl
from switchboard.presence.sweep import Sweeper
from switchboard.router.engine import MemorySink, Router
from switchboard.router.reload import ConfigStore
from switchboard.router.upkeep import Upkeep
from switchboard.routing.surge import SurgeProfile
from switchboard.runtime.kafka import RecordProducer
from switchboard.runtime.settings import ServiceSettings
from switchboard.state.agents import PresenceStore
from switchboard.state.keys import Keys
from switchboard.state.roster import ChannelSlots, RosterAgent, load_roster
from tests.helpers import eventually
from tests.redis_cluster import on_both_redis_backends
from tests.router_support import message, presence_backlog

pytestmark = [pytest.mark.broker, on_both_redis_backends]

T = "shop-a"


@dataclass
class Stack:
    """Presence (store, controls) and a router sharing one Redis, and a reader of the presence topic."""

    presence: PresenceStore
    control: SurgeControl
    upkeep: Upkeep
    router: Router
    consumer: AIOKafkaConsumer

    async def deliver_presence(self) -> list[AgentPresence]:
        """Hand the router every presence record published so far and not yet handed over (acked = on the topic)."""
        records = await presence_backlog(self.consumer)
        await self.upkeep.handle_presence(records)
        return records

    async def conv(self, conv: str) -> dict[str, str]:
        raw = await self.presence.redis.hgetall(self.presence.keys.conversation(T, conv))
        return {k.decode(): v.decode() for k, v in raw.items()}

    async def send(self, conv: str, text: str = "这个尺码合适吗") -> None:
        assert await self.router.handle_inbound([message(T, conv, f"m-{conv}", text)]) == []

    async def send_as(self, conv: str, text: str, language: str) -> str:
        """Send the first message of a conversation in a language; its owner after routing ('' while it waits)."""
        assert await self.router.handle_inbound([message(T, conv, f"m-{conv}", text, language=language)]) == []
        return (await self.conv(conv)).get("owner", "")


@pytest.fixture
async def stack(settings: ServiceSettings, redis: Redis, repo_root: Path, tmp_path: Path) -> AsyncIterator[Stack]:
    routing = (repo_root / "config" / "routing" / "tmall-flagship.yaml").read_text(encoding="utf-8")
    routing = routing.replace("tenant: tmall-flagship", f"tenant: {T}")
    routing = routing.replace("offline_grace_s: 60", "offline_grace_s: 0")
    (tmp_path / "routing").mkdir()
    (tmp_path / "routing" / f"{T}.yaml").write_text(routing, encoding="utf-8")
    configs = ConfigStore(tmp_path / "routing")
    configs.poll()
    assert configs.get(T) is not None, configs.errors
    keys = Keys(settings.key_prefix)
    router = Router(redis, keys, configs, MemorySink(), instance="test")
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
        presence = PresenceStore(redis, keys, producer)
        await presence.load_roster(load_roster())
        control = SurgeControl(presence, AuditLog(redis, keys))
        stack = Stack(presence, control, router.upkeep, router, consumer)
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


async def test_lost_heartbeats_send_conversations_back_to_the_queue(stack: Stack) -> None:
    await stack.presence.login(T, "a-lina")
    await stack.deliver_presence()
    await stack.send("c1")
    assert (await stack.conv("c1"))["owner"] == "a-lina"

    sweeper = Sweeper(stack.presence, stack.control, grace_s=0.3, interval_s=0.05)
    task = asyncio.create_task(sweeper.run())
    try:

        async def offline() -> bool:
            agent = await stack.presence.get_agent(T, "a-lina")
            return agent is not None and agent.status.value == "offline"

        await eventually(offline, timeout=5, what="a-lina swept offline")
    finally:
        sweeper.stop()
        await task
    records = await stack.deliver_presence()
    assert [r.changed_by for r in records] == ["heartbeat_sweep"]
    conv = await stack.conv("c1")
    assert conv["owner"] == ""
    assert conv["state"] == "queued"


@pytest.mark.parametrize("lever", ["capacity_factor", "surge_profile"])
async def test_surge_lets_a_waiting_conversation_in_at_once(stack: Stack, lever: str) -> None:
    await stack.presence.update_profile(T, "a-lina", capacity={"chat": 1})
    await stack.presence.login(T, "a-lina")
    await stack.deliver_presence()
    await stack.send("c1")
    await stack.send("c2")
    assert (await stack.conv("c1"))["owner"] == "a-lina"
    assert (await stack.conv("c2"))["state"] == "queued"

    if lever == "capacity_factor":
        changed = await stack.control.scale_capacity(T, 2.0, "operator:test")
    else:
        profile = SurgeProfile(tenant_factor=1.0, group_factors={"presales": 2.0})
        await stack.control.put_profile(T, "double11", profile, "operator:test")
        changed = await stack.control.activate(T, "double11", "operator:test")
    assert "a-lina" in changed
    await stack.deliver_presence()
    assert (await stack.conv("c2"))["owner"] == "a-lina"


async def _long_grace(stack: Stack) -> None:
    """A grace period no test waits out: what follows does not depend on it."""
    configs = stack.router.context.configs
    config = configs.get(T)
    assert config is not None
    configs.put(config.model_copy(update={"offline_grace_s": 3600}))


async def test_a_removed_temporary_agents_chats_reach_another_agent(stack: Stack) -> None:
    await _long_grace(stack)
    helper = RosterAgent(agent_id="tmp-1", groups=["presales"], capacity=ChannelSlots(chat=3))
    await stack.control.add_temporary_agents(T, [helper], "operator:test")
    await stack.presence.login(T, "tmp-1")
    await stack.deliver_presence()
    await stack.send("c1")
    await stack.send("c2")
    arrived = {c: (await stack.conv(c))["enqueued_ms"] for c in ("c1", "c2")}
    assert {(await stack.conv(c))["owner"] for c in ("c1", "c2")} == {"tmp-1"}
    await stack.presence.login(T, "a-lina")
    await stack.deliver_presence()

    # The operator API's DELETE of temporary agents: no grace period for an agent who is no agent any more.
    assert await stack.control.remove_temporary_agents(T, ["tmp-1"], "operator:test") == {"tmp-1": "removed"}
    await stack.deliver_presence()
    for conv in ("c1", "c2"):
        state = await stack.conv(conv)
        assert (state["owner"], state["enqueued_ms"]) == ("a-lina", arrived[conv])
    assert await stack.presence.redis.scard(stack.presence.keys.agent_conversations(T, "tmp-1")) == 0
    await stack.upkeep.sweep()
    assert not await stack.presence.redis.smembers(stack.presence.keys.removed_agents(T))


async def test_an_agent_pruned_from_the_roster_hands_back_their_chats_on_the_next_sweep(stack: Stack) -> None:
    await _long_grace(stack)
    await stack.presence.login(T, "a-lina")
    await stack.deliver_presence()
    await stack.send("c1")
    arrived = (await stack.conv("c1"))["enqueued_ms"]
    assert (await stack.conv("c1"))["owner"] == "a-lina"
    helper = RosterAgent(agent_id="tmp-2", groups=["presales"], capacity=ChannelSlots(chat=3))
    await stack.control.add_temporary_agents(T, [helper], "operator:test")
    await stack.presence.login(T, "tmp-2")
    await stack.deliver_presence()

    roster = load_roster()
    for tenant in roster.tenants:
        tenant.agents = [a for a in tenant.agents if a.agent_id != "a-lina"]
    await stack.presence.load_roster(roster)
    # The router missed the presence records (it was restarting, say): its sweep finds the removed agent.
    await stack.upkeep.sweep()
    state = await stack.conv("c1")
    assert (state["owner"], state["enqueued_ms"]) == ("tmp-2", arrived)


async def test_levels_and_languages_from_presence_decide_and_a_raised_level_drains_at_once(stack: Stack) -> None:
    """The roster's languages and an operator's level change reach the router through presence's records: a
    Japanese message goes to the Japanese speaker though an English-only agent is less loaded, a complaint waits
    while its only agent's level is below the ring (tmall example: 3 until 90 s), and raising the level lets it in
    at once."""
    for agent in ("a-emma", "a-min"):
        await stack.presence.login(T, agent)
    await stack.presence.update_profile(T, "a-lina", groups=["cross_border"], languages=["en"])
    await stack.presence.login(T, "a-lina")
    await stack.deliver_presence()
    # English: the least loaded of the two (a tie goes to a-emma by id); then a-lina is the less loaded one, but
    # the Japanese message goes to a-emma all the same.
    assert (await stack.send_as("c-en", "hi, do you ship to Japan?", "en")) == "a-emma"
    assert (await stack.send_as("c-ja", "在庫はありますか", "ja")) == "a-emma"
    assert (await stack.send_as("c-en2", "and to Korea?", "en")) == "a-lina"

    await stack.presence.update_profile(T, "a-min", proficiency={"complaints": 2})
    await stack.deliver_presence()
    assert (await stack.send_as("c-angry", "我要投诉 东西是坏的", "zh")) == ""
    sink = stack.router.context.sink
    assert isinstance(sink, MemorySink)
    queued = [e for e in sink.events if e.conversation_id == "c-angry"][-1]
    assert ("a-min", "below_level:3") in {(v.agent_id, v.reason) for v in queued.candidates}
    await stack.presence.update_profile(T, "a-min", proficiency={"complaints": 4})
    await stack.deliver_presence()
    assert (await stack.conv("c-angry"))["owner"] == "a-min"


async def test_an_operator_gives_a_waiting_japanese_buyer_a_speaker_live(stack: Stack) -> None:
    """Operators' levers in presence reach the router's language rule at once: a Japanese message waits in
    cross_border (strict for a minute) while only an English speaker is there; a helper added with Japanese takes it
    as soon as it logs in, and the next one waits until an operator adds Japanese to the English speaker's
    languages."""
    await stack.control.update_agent(
        T, "a-lina", {"groups": ["cross_border"], "languages": ["zh", "en"], "proficiency": {"cross_border": 4}}, "op"
    )
    await stack.presence.login(T, "a-lina")
    await stack.deliver_presence()
    assert (await stack.send_as("c-ja1", "この靴は日本に送れますか", "ja")) == ""
    helper = RosterAgent(
        agent_id="tmp-ja",
        groups=["cross_border"],
        languages=["ja"],
        proficiency={"cross_border": 2},
        capacity=ChannelSlots(chat=1),
    )
    await stack.control.add_temporary_agents(T, [helper], "operator:test")
    await stack.presence.login(T, "tmp-ja")
    await stack.deliver_presence()
    assert (await stack.conv("c-ja1"))["owner"] == "tmp-ja"

    assert (await stack.send_as("c-ja2", "サイズ交換できますか", "ja")) == ""  # tmp-ja is full, a-lina no speaker
    await stack.control.update_agent(T, "a-lina", {"languages": ["zh", "en", "ja"]}, "operator:test")
    await stack.deliver_presence()
    assert (await stack.conv("c-ja2"))["owner"] == "a-lina"


async def test_a_pooled_agent_has_the_default_level_in_the_pooled_group(stack: Stack) -> None:
    """A surge pool puts agents into a group they have no level in: they count at DEFAULT_LEVEL there (3), which
    the example's complaints ring asks for, so a complaint waiting for a level-3 agent reaches the pooled one as
    soon as the profile is on."""
    await stack.control.update_agent(T, "a-min", {"proficiency": {"complaints": 2, "after_sales": 3}}, "op")
    await stack.presence.login(T, "a-min")
    await stack.deliver_presence()
    assert (await stack.send_as("c-angry", "我要投诉 客服一直不回", "zh")) == ""  # a-min is below the ring
    await stack.presence.login(T, "a-lina")
    await stack.deliver_presence()
    assert (await stack.conv("c-angry"))["owner"] == ""  # a-lina does not serve complaints

    profile = SurgeProfile(pools={"presales": ["complaints"]})
    await stack.control.put_profile(T, "d11", profile, "operator:test")
    await stack.control.activate(T, "d11", "operator:test")
    lina = await stack.presence.get_agent(T, "a-lina")
    assert lina is not None
    assert "complaints" in lina.groups and "complaints" not in lina.proficiency
    await stack.deliver_presence()
    assert (await stack.conv("c-angry"))["owner"] == "a-lina"
