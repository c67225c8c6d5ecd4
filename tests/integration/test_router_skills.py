"""Skills in routing against a real Redis (docs/routing.md, "Skills"): proficiency rings that relax with the wait, a
conversation's language, and groups' channels, in the candidate chain, the drain and the sweep."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from redis.asyncio import Redis

from switchboard.contracts import AgentCommand, AgentCommandType, RoutingEvent, RoutingEventType
from switchboard.router.engine import MemorySink, Router
from switchboard.router.reload import ConfigStore
from switchboard.routing.config import TenantRouting
from switchboard.state.keys import Keys
from tests.redis_cluster import on_both_redis_backends
from tests.router_support import check_invariants, message, now_ms, put_agent, read_state

pytestmark = [pytest.mark.broker, on_both_redis_backends]

T = "skills-shop"
ROUTING = f"""
tenant: {T}
default_group: general
skill_groups:
  - name: general
  - name: complaints
    languages: [zh, en]
    skill_levels:
      - {{min_level: 4}}
      - {{min_level: 2, after_s: 30}}
  - name: cross_border
    languages: [en, ja, es]
    language_relax_after_s: 60
  - name: chat_desk
    channels: [chat]
  - name: orders
    overflow:
      - {{group: chat_desk, after_s: 30}}
      - {{group: general, after_s: 60}}
rules:
  - {{name: lawyer, group: complaints, priority: 50, match: {{keywords: [律师]}}}}
  - {{name: complaint, group: complaints, priority: 30, match: {{keywords: [投诉]}}}}
  - {{name: foreign, group: cross_border, priority: 5, match: {{language: [en, ja, es]}}}}
  - {{name: address, group: orders, match: {{keywords: [改地址]}}}}
  - {{name: live-stream, group: chat_desk, match: {{keywords: [直播间]}}}}
"""


@dataclass
class Env:
    redis: Redis
    keys: Keys
    store: ConfigStore
    router: Router
    sink: MemorySink
    clock: list[int]
    sent: dict[str, list[str]] = field(default_factory=dict)

    @property
    def config(self) -> TenantRouting:
        config = self.store.get(T)
        assert config is not None
        return config

    async def agent(self, agent: str, groups: list[str], **kw: object) -> None:
        await put_agent(self.redis, self.keys, T, agent, groups, since_ms=self.clock[0], **kw)  # type: ignore[arg-type]

    async def send(self, conv: str, text: str, **kw: str) -> None:
        mid = f"{conv}-{len(self.sent.get(conv, []))}"
        self.sent.setdefault(conv, []).append(mid)
        assert await self.router.handle_inbound([message(T, conv, mid, text, **kw)]) == []

    async def conv(self, conv: str) -> dict[str, str]:
        raw = await self.redis.hgetall(self.keys.conversation(T, conv))
        return {k.decode(): v.decode() for k, v in raw.items()}

    async def sweep_at(self, seconds: float) -> None:
        self.clock[0] = self.start + int(seconds * 1000)
        await self.router.upkeep.sweep()

    @property
    def start(self) -> int:
        return self._start

    def events(self, conv: str, kind: str) -> list[RoutingEvent]:
        wanted = getattr(RoutingEventType, f"ROUTING_EVENT_{kind.upper()}")
        return [e for e in self.sink.events if e.conversation_id == conv and e.type == wanted]

    async def check(self) -> None:
        state = await read_state(self.redis, self.keys, self.config, set(self.sent))
        check_invariants(state, self.config, self.sent, now_ms=self.clock[0])

    _start: int = 0


@pytest.fixture
async def env(redis: Redis, prefix: str, tmp_path: Path) -> AsyncIterator[Env]:
    (tmp_path / f"{T}.yaml").write_text(ROUTING, encoding="utf-8")
    store = ConfigStore(tmp_path)
    store.poll()
    assert store.get(T) is not None
    clock = [now_ms()]
    sink = MemorySink()
    router = Router(redis, Keys(prefix.rstrip(".")), store, sink, instance="test", clock=lambda: clock[0])
    found = Env(redis, Keys(prefix.rstrip(".")), store, router, sink, clock)
    found._start = clock[0]
    yield found


async def test_a_japanese_message_goes_to_the_japanese_speaker_though_another_is_less_loaded(env: Env) -> None:
    await env.agent("kenji", ["cross_border"], languages="en,ja")
    await env.send("c-en", "hello, is this in stock?", language="en")
    assert (await env.conv("c-en"))["owner"] == "kenji"
    await env.agent("anna", ["cross_border"], languages="en")
    await env.send("c-ja", "この商品の在庫はありますか", language="ja")
    conv = await env.conv("c-ja")
    assert (conv["owner"], conv["lang"]) == ("kenji", "ja")  # 1/3 loaded, anna 0/3 but no Japanese
    event = env.events("c-ja", "assigned")[0]
    assert (event.language, event.language_relaxed, event.min_level) == ("ja", False, 1)
    await env.send("c-en2", "where is my parcel", language="en")
    assert (await env.conv("c-en2"))["owner"] == "anna"  # English: the least loaded again
    await env.check()


async def test_a_japanese_message_waits_for_a_speaker_then_relaxes_at_the_sweep(env: Env) -> None:
    await env.agent("anna", ["cross_border"], languages="en")
    await env.send("c-ja", "注文番号 123456 の件です", language="ja")
    queued = env.events("c-ja", "queued")[0]
    assert [(v.agent_id, v.reason) for v in queued.candidates] == [("anna", "language:ja")]
    await env.check()  # waits while anna has room: she is not eligible yet
    await env.sweep_at(59)
    assert (await env.conv("c-ja"))["state"] == "queued"
    await env.sweep_at(61)
    assert (await env.conv("c-ja"))["owner"] == "anna"
    event = env.events("c-ja", "assigned")[0]
    assert event.language_relaxed and event.language == "ja"
    assert "language_relaxed:cross_border" in event.reasons
    await env.check()


async def test_a_queued_complaint_goes_to_an_agent_below_the_first_ring_at_the_sweep_after_it_relaxes(
    env: Env,
) -> None:
    await env.agent("junior", ["complaints"], proficiency="complaints:2")
    await env.send("c1", "我要投诉你们 发错货了")
    queued = env.events("c1", "queued")[0]
    assert queued.min_level == 4
    assert [(v.agent_id, v.reason) for v in queued.candidates] == [("junior", "below_level:4")]
    await env.check()
    await env.sweep_at(29)
    assert (await env.conv("c1"))["state"] == "queued"
    await env.sweep_at(31)
    assert (await env.conv("c1"))["owner"] == "junior"
    assigned = env.events("c1", "assigned")[0]
    assert assigned.min_level == 2 and "min_level:complaints:2" in assigned.reasons
    # A senior takes a fresh one at once, whatever the junior's load.
    await env.agent("senior", ["complaints"], proficiency="complaints:5")
    await env.send("c2", "投诉 客服态度太差")
    assert (await env.conv("c2"))["owner"] == "senior"
    await env.check()


async def test_the_drain_looks_past_heads_the_agent_may_not_take(env: Env) -> None:
    await env.agent("junior", ["complaints"], proficiency="complaints:2", status="away")
    await env.send("old", "投诉 三天没人理")
    env.clock[0] = env.start + 31_000
    for i in range(12):  # higher priority: ahead of the old one in the queue, and fresh (level 4)
        await env.send(f"new{i:02d}", "我要找律师")
    queue = await env.redis.zrange(env.keys.queue_channel(T, "complaints", "chat"), 0, -1)
    assert queue[-1] == b"old"
    await env.redis.hset(env.keys.agent(T, "junior"), "status", "available")
    await env.sweep_at(31)
    assert (await env.conv("old"))["owner"] == "junior"
    assert {(await env.conv(f"new{i:02d}"))["state"] for i in range(12)} == {"queued"}
    await env.check()


async def test_a_phone_call_never_enters_a_chat_only_group(env: Env) -> None:
    await env.agent("olga", ["orders"], chat=0, phone=0)
    await env.agent("chen", ["chat_desk"])
    # Classification: the rule to the chat desk is skipped for a call, which goes to the default group.
    await env.send("live-call", "直播间那件外套还有吗", channel="phone")
    assert (await env.conv("live-call"))["group"] == "general"
    await env.send("live-chat", "直播间那件外套还有吗")
    assert (await env.conv("live-chat"))["owner"] == "chen"
    await env.send("call", "我想改地址", channel="phone")
    await env.send("chat", "我想改地址")
    await env.sweep_at(31)
    assert (await env.conv("chat"))["owner"] == "chen"  # the chat: its ring to the chat desk fired
    call = await env.conv("call")
    assert (call["state"], call["queues"]) == ("queued", "orders")  # the call: that ring is not for it
    await env.agent("gina", ["general"])
    await env.sweep_at(61)
    assert (await env.conv("call"))["owner"] == "gina"
    await env.check()
    # Nor by a transfer: refused, the call stays with its owner.
    epoch = int((await env.conv("call"))["epoch"])
    cmd = AgentCommand(
        command_id=uuid.uuid4().hex,
        tenant_id=T,
        agent_id="gina",
        conversation_id="call",
        type=AgentCommandType.AGENT_COMMAND_TRANSFER,
        epoch=epoch,
        transfer_to_group="chat_desk",
    )
    assert await env.router.handle_commands([cmd]) == []
    call = await env.conv("call")
    assert (call["owner"], call["state"], int(call["epoch"])) == ("gina", "assigned", epoch)
    assert env.events("call", "transferred") == []
    await env.check()
