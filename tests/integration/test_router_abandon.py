"""Customers who leave while waiting, against a real Redis: callers who hang up, chat customers who closed the widget.

A caller who hangs up while queued or offered leaves the queue at once and frees only what the conversation held
(an offer's slot); an ended call never reopens a closed conversation. A chat customer away past the tenant's
patience leaves the queue, and one who comes back is routed again with the original arrival time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from redis.asyncio import Redis

from switchboard.contracts import (
    AgentCommand,
    AgentCommandType,
    CallEvent,
    DeskEventType,
    InboundMessage,
    MessageKind,
    PhoneDetail,
    RoutingEvent,
    RoutingEventType,
)
from switchboard.router.engine import MemorySink, Router
from switchboard.router.reload import ConfigStore
from switchboard.routing.config import Abandonment, OfferPolicy, TenantRouting
from switchboard.state.departures import Departures, gone_since
from switchboard.state.figures import read_service_level
from switchboard.state.keys import Keys
from tests.redis_cluster import on_both_redis_backends
from tests.router_support import check_invariants, message, now_ms, outbox, put_agent, read_state

pytestmark = [pytest.mark.broker, on_both_redis_backends]

T = "tmall-flagship"
ASK = "这个尺码合适吗"  # presales (chat and e-mail) in the tenant's rules
CALL = "地址写错了 我要改地址"  # orders (every channel: presales takes no calls)


@dataclass
class Env:
    redis: Redis
    keys: Keys
    store: ConfigStore
    router: Router
    sink: MemorySink
    clock: list[int] = field(default_factory=lambda: [now_ms()])
    sent: dict[str, list[str]] = field(default_factory=dict)

    def config(self) -> TenantRouting:
        config = self.store.get(T)
        assert config is not None
        return config

    def use_offers(self) -> None:
        config = self.config()
        groups = [g.model_copy(update={"offer": None}) for g in config.skill_groups]
        offers = OfferPolicy(mode="offer", timeout_s=20, max_misses=3)
        self.store.put(config.model_copy(update={"offers": offers, "skill_groups": groups}))

    async def send(self, conv: str, mid: str, text: str = ASK, **kw: str) -> None:
        m = message(T, conv, mid, text, **kw)
        m.received_at.FromMilliseconds(self.clock[0])
        self.sent.setdefault(conv, []).append(mid)
        assert await self.router.handle_inbound([m]) == []

    async def hang_up(self, conv: str, mid: str) -> None:
        if (await self.conv(conv)).get("state") == "assigned" and mid not in self.sent.get(conv, []):
            self.sent[conv].append(mid)  # the owner's desk gets it like any later message
        assert await self.router.handle_inbound([call_ended(conv, mid)]) == []

    async def conv(self, conv: str) -> dict[str, str]:
        raw = await self.redis.hgetall(self.keys.conversation(T, conv))
        return {k.decode(): v.decode() for k, v in raw.items()}

    async def used(self, agent: str, channel: str) -> int:
        return int(await self.redis.hget(self.keys.agent(T, agent), f"used:{channel}") or 0)

    def events(self, kind: str, conv: str | None = None) -> list[RoutingEvent]:
        wanted = getattr(RoutingEventType, f"ROUTING_EVENT_{kind.upper()}")
        return [e for e in self.sink.events if e.type == wanted and conv in (None, e.conversation_id)]

    async def check(self) -> None:
        state = await read_state(self.redis, self.keys, self.config(), set(self.sent))
        check_invariants(state, self.config(), self.sent, now_ms=self.clock[0])


def call_ended(conv: str, mid: str) -> InboundMessage:
    """The phone adapter's call.ended of a call."""
    m = message(T, conv, mid, "", channel="phone")
    m.kind = MessageKind.MESSAGE_KIND_CALL_EVENT
    m.phone.CopyFrom(PhoneDetail(call_id=f"call-{conv}", event=CallEvent.CALL_EVENT_ENDED))
    return m


@pytest.fixture
async def env(redis: Redis, prefix: str, repo_root: Path) -> AsyncIterator[Env]:
    keys = Keys(prefix.rstrip("."))
    store = ConfigStore(repo_root / "config" / "routing")
    store.poll()
    sink = MemorySink()
    clock = [now_ms()]
    router = Router(redis, keys, store, sink, instance="test", clock=lambda: clock[0])
    yield Env(redis, keys, store, router, sink, clock)


async def test_a_caller_who_hangs_up_while_queued_frees_nothing_and_is_never_assigned(env: Env) -> None:
    await put_agent(env.redis, env.keys, T, "lina", ["presales", "orders"], chat=3, phone=1)
    await env.send("call-1", "p1", CALL, channel="phone")
    await env.send("call-2", "p2", CALL, channel="phone")  # lina's one phone slot is taken: queued
    assert (await env.conv("call-2"))["state"] == "queued"
    env.clock[0] += 25_000
    await env.hang_up("call-2", "p2-ended")

    assert (await env.conv("call-2"))["state"] == "abandoned"
    assert await env.used("lina", "phone") == 1  # the call lina has is still hers; nothing else was freed
    [abandoned] = env.events("abandoned", "call-2")
    assert abandoned.wait_ms == 25_000 and abandoned.skill_group == "orders" and abandoned.agent_id == ""
    assert "abandoned:call_ended" in abandoned.reasons
    # When lina's call ends, the caller who hung up is not given to her.
    await env.hang_up("call-1", "p1-ended")
    assert await _close(env, "call-1", "lina")
    await env.router.upkeep.sweep()
    assert not env.events("assigned", "call-2") and not env.events("offered", "call-2")
    assert await env.redis.zcard(env.keys.queue_channel(T, "orders", "phone")) == 0
    # It counts in the service level: one answered at once, one abandoned.
    level = await read_service_level(env.redis, env.keys, T, "orders", "phone", target_s=30, now_ms=env.clock[0])
    assert (level.answered, level.answered_within, level.abandoned, level.level) == (1, 1, 1, 0.5)
    await env.check()


async def test_a_caller_who_hangs_up_while_offered_gives_the_offer_back_and_the_agent_takes_the_next(
    env: Env,
) -> None:
    env.use_offers()
    await put_agent(env.redis, env.keys, T, "lina", ["presales", "orders"], chat=1, phone=1)
    await env.send("call-1", "p1", CALL, channel="phone")
    await env.send("chat-1", "c1", ASK)  # lina is on the phone (the call blocks other work): queued
    assert (await env.conv("call-1"))["state"] == "offered"
    assert await env.used("lina", "phone") == 1  # an offer holds the slot
    await env.hang_up("call-1", "p1-ended")

    assert (await env.conv("call-1"))["state"] == "abandoned"
    assert await env.used("lina", "phone") == 0
    assert await env.redis.zscore(env.keys.offers(T), "call-1") is None
    [abandoned] = env.events("abandoned", "call-1")
    assert abandoned.agent_id == "lina"
    # Her desk sees the offer revoked, and she is offered the chat that waited.
    assert (await env.conv("chat-1"))["offer_agent"] == "lina"
    desk = [(e.type, e.conversation_id) for e in await outbox(env.redis, env.keys, T, "lina")]
    assert (DeskEventType.DESK_EVENT_REVOKED, "call-1") in desk
    assert desk[-1] == (DeskEventType.DESK_EVENT_OFFER, "chat-1")
    await env.check()


async def test_an_ended_call_after_the_agent_closed_it_never_reopens_or_reassigns_it(env: Env) -> None:
    await put_agent(env.redis, env.keys, T, "lina", ["presales", "orders"], phone=1)
    await env.send("call-1", "p1", CALL, channel="phone")
    conv = await env.conv("call-1")
    assert conv["owner"] == "lina" and conv["epoch"] == "1"
    assert await _close(env, "call-1", "lina")
    await env.hang_up("call-1", "p1-ended")
    await env.hang_up("call-1", "p1-ended")  # redelivered

    conv = await env.conv("call-1")
    assert (conv["state"], conv["owner"], conv["epoch"]) == ("closed", "", "2")
    assert len(env.events("assigned", "call-1")) == 1 and not env.events("abandoned", "call-1")
    await env.check()


async def test_an_ended_call_of_an_assigned_conversation_reaches_its_owner(env: Env) -> None:
    await put_agent(env.redis, env.keys, T, "lina", ["presales", "orders"], phone=1)
    await env.send("call-1", "p1", CALL, channel="phone")
    await env.hang_up("call-1", "p1-ended")
    conv = await env.conv("call-1")
    assert (conv["state"], conv["owner"]) == ("assigned", "lina")
    delivered = env.events("message_delivered", "call-1")
    assert [e.message_id for e in delivered] == ["p1-ended"]


async def test_a_redelivered_hang_up_abandons_once(env: Env) -> None:
    await put_agent(env.redis, env.keys, T, "lina", ["presales", "orders"], phone=0)
    await env.send("call-1", "p1", CALL, channel="phone")
    await env.hang_up("call-1", "p1-ended")
    await env.hang_up("call-1", "p1-ended")
    assert len(env.events("abandoned", "call-1")) == 2  # the event is sent again (at least once) ...
    level = await read_service_level(env.redis, env.keys, T, "orders", target_s=30, now_ms=env.clock[0])
    assert level.abandoned == 1  # ... and counted once
    assert (await env.conv("call-1"))["epoch"] == "1"


async def test_a_chat_customer_gone_past_patience_leaves_and_comes_back_with_the_original_arrival(
    env: Env,
) -> None:
    config = env.config()
    env.store.put(config.model_copy(update={"abandonment": Abandonment(chat_patience_s=120)}))
    await put_agent(env.redis, env.keys, T, "lina", ["presales"], chat=1)
    await env.send("chat-0", "c0", ASK)  # lina's only chat slot
    # The customer of chat-1 opens the widget (the chat adapter opens their conversation), writes, and leaves.
    await env.redis.set(env.keys.chat_conversation(T, "cust-chat-1"), "chat-1")
    departures = Departures(env.redis, env.keys)
    await departures.socket_opened(T, "cust-chat-1", "sock-a")
    arrived = env.clock[0]
    await env.send("chat-1", "c1", ASK)
    assert (await env.conv("chat-1"))["state"] == "queued"
    assert await departures.socket_closed(T, "cust-chat-1", "sock-a", env.clock[0])
    assert await gone_since(env.redis, env.keys, T, "chat-1") == env.clock[0]

    env.clock[0] += 119_000
    await env.router.upkeep.sweep()
    assert (await env.conv("chat-1"))["state"] == "queued"  # within patience
    env.clock[0] += 2_000
    await env.router.upkeep.sweep()
    assert (await env.conv("chat-1"))["state"] == "abandoned"
    [abandoned] = env.events("abandoned", "chat-1")
    assert abandoned.wait_ms == 121_000 and "abandoned:chat_patience" in abandoned.reasons
    assert await gone_since(env.redis, env.keys, T, "chat-1") is None
    await env.check()

    # They come back and write: routed again, with the arrival they first had and everything they wrote.
    await departures.socket_opened(T, "cust-chat-1", "sock-b")
    env.clock[0] += 30_000
    await env.send("chat-1", "c1b", "还在吗")
    conv = await env.conv("chat-1")
    assert (conv["state"], conv["enqueued_ms"]) == ("queued", str(arrived))
    [queued_again] = env.events("queued", "chat-1")[-1:]
    assert queued_again.enqueued_at.ToMilliseconds() == arrived
    assert "returned_after_abandoning" in queued_again.reasons
    assert await _close(env, "chat-0", "lina")
    conv = await env.conv("chat-1")
    assert (conv["state"], conv["owner"]) == ("assigned", "lina")
    await env.check()


async def test_a_chat_customer_who_reconnects_within_patience_keeps_waiting(env: Env) -> None:
    config = env.config()
    env.store.put(config.model_copy(update={"abandonment": Abandonment(chat_patience_s=60)}))
    await put_agent(env.redis, env.keys, T, "lina", ["presales"], chat=0)
    await env.redis.set(env.keys.chat_conversation(T, "cust-chat-1"), "chat-1")
    departures = Departures(env.redis, env.keys)
    await departures.socket_opened(T, "cust-chat-1", "sock-a")
    await departures.socket_opened(T, "cust-chat-1", "sock-b")  # a second tab
    await env.send("chat-1", "c1", ASK)
    assert not await departures.socket_closed(T, "cust-chat-1", "sock-a", env.clock[0])  # sock-b still open
    assert await departures.socket_closed(T, "cust-chat-1", "sock-b", env.clock[0])
    env.clock[0] += 30_000
    await departures.socket_opened(T, "cust-chat-1", "sock-c")
    env.clock[0] += 60_000
    await env.router.upkeep.sweep()
    assert (await env.conv("chat-1"))["state"] == "queued"
    assert not env.events("abandoned")


async def _close(env: Env, conv: str, agent: str) -> bool:
    epoch = int((await env.conv(conv))["epoch"])
    cmd = AgentCommand(
        command_id=f"close-{conv}",
        tenant_id=T,
        agent_id=agent,
        conversation_id=conv,
        type=AgentCommandType.AGENT_COMMAND_CLOSE,
        epoch=epoch,
        session_epoch=1,
        wrap_up_code="resolved",
    )
    return await env.router.handle_commands([cmd]) == []


async def test_gone_marks_of_a_shop_without_patience_are_forgotten_after_a_day(env: Env) -> None:
    env.store.put(env.config().model_copy(update={"abandonment": Abandonment()}))
    await put_agent(env.redis, env.keys, T, "lina", ["presales"], chat=0)
    await env.redis.set(env.keys.chat_conversation(T, "cust-chat-1"), "chat-1")
    await env.send("chat-1", "c1", ASK)
    assert await Departures(env.redis, env.keys).socket_closed(T, "cust-chat-1", "sock-a", env.clock[0])
    env.clock[0] += 3_600_000
    await env.router.upkeep.sweep()
    assert (await env.conv("chat-1"))["state"] == "queued"  # no patience: they wait
    assert await gone_since(env.redis, env.keys, T, "chat-1") is not None
    env.clock[0] += 24 * 3_600_000
    await env.router.upkeep.sweep()
    assert await gone_since(env.redis, env.keys, T, "chat-1") is None
    assert (await env.conv("chat-1"))["state"] == "queued"
