"""Redis SIGKILLed under load and restarted empty: the routers rebuild their state from the topics.

docs/state.md "When Redis loses its data" (router); docs/invariants.md invariants 1 and 2. Two router processes
route a tenant's traffic while desks (simulated, as the gateway would: they notice a lost outbox and read it from
the start) accept and close what they get. Redis is SIGKILLed mid-load, messages keep being acknowledged by Kafka
while it is down, and it comes back with nothing in it; the agents are written again as presence's rebuild would.
Every acknowledged message must still reach exactly one agent's desk, no conversation may have two owners, and
the time from Redis back (empty) to the first new message on a desk is printed: the time to resume routing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from switchboard.contracts import AgentCommand, AgentCommandType, DeskEventType
from switchboard.routing.config import load_config_file
from switchboard.runtime.kafka import RecordProducer
from switchboard.runtime.redis_client import redis_client
from switchboard.runtime.settings import ServiceSettings
from switchboard.state.keys import Keys
from switchboard.state.outbox import read_outbox
from switchboard_tools.stack.redis import LocalRedis
from tests.helpers import eventually
from tests.integration.router_procs import REPO, start_router, stop_router
from tests.router_support import _check_capacity, _check_conversation, message, put_agent, read_state

pytestmark = [pytest.mark.broker]

T = "tmall-flagship"
TEXTS = ["这个尺码合适吗", "我要退货", "快递到哪了", "优惠券怎么用", "帮我改地址"]
GROUPS = ["presales", "general", "after_sales", "logistics", "orders", "promotions"]
AGENTS = [f"agent-{i}" for i in range(6)]


@dataclass
class Desks:
    """Agents' desktops: accept every offer, close every assignment after a moment; what each desk got.

    Like the gateway, a desk that finds Redis lost its outbox reads it again from the start and recognises messages
    it already has by message_id. The gateway notices by its pub/sub subscription dropping; here a key the desks
    set is gone (a seq that went backwards is not enough: after the rebuild the routers may have appended more
    events than the desk had read before it could look)."""

    redis: Redis
    keys: Keys
    producer: RecordProducer
    seq: dict[str, int] = field(default_factory=lambda: dict.fromkeys(AGENTS, 0))
    got: dict[str, set[str]] = field(default_factory=dict)  # message id -> agents whose desk got it
    got_at: dict[str, float] = field(default_factory=dict)  # message id -> when it first reached a desk
    assigned: dict[tuple[str, int], set[str]] = field(default_factory=dict)  # (conversation, epoch) -> agents
    outbox_lost: set[str] = field(default_factory=set)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        while not self.stop.is_set():
            with contextlib.suppress(RedisError):  # Redis is down: try again
                await self._poll()
            await asyncio.sleep(0.05)

    async def _poll(self) -> None:
        commands = []
        alive = f"{self.keys.prefix}:test-desks-alive"
        if not await self.redis.exists(alive):
            for agent in AGENTS:
                if self.seq[agent]:
                    self.outbox_lost.add(agent)
                self.seq[agent] = 0
            await self.redis.set(alive, "1")
        for agent in AGENTS:
            top = int(await self.redis.get(self.keys.desk_seq(T, agent)) or 0)
            if top < self.seq[agent]:
                self.outbox_lost.add(agent)
                self.seq[agent] = 0
            for event in await read_outbox(self.redis, self.keys, T, agent, self.seq[agent]):
                self.seq[agent] = event.seq
                mid = event.message.message_id
                if event.type in (DeskEventType.DESK_EVENT_ASSIGNED, DeskEventType.DESK_EVENT_MESSAGE) and mid:
                    self.got.setdefault(mid, set()).add(agent)
                    self.got_at.setdefault(mid, time.monotonic())
                if event.type == DeskEventType.DESK_EVENT_ASSIGNED:
                    self.assigned.setdefault((event.conversation_id, event.epoch), set()).add(agent)
                    commands.append((agent, event.conversation_id, event.epoch, AgentCommandType.AGENT_COMMAND_CLOSE))
                elif event.type == DeskEventType.DESK_EVENT_OFFER:
                    commands.append((agent, event.conversation_id, event.epoch, AgentCommandType.AGENT_COMMAND_ACCEPT))
        if commands:
            await asyncio.sleep(0.05)
            await self.producer.send_many(
                self.producer.topics.commands,
                [
                    (
                        conv,
                        AgentCommand(
                            command_id=uuid.uuid4().hex,
                            tenant_id=T,
                            agent_id=agent,
                            conversation_id=conv,
                            type=kind,
                            epoch=epoch,
                            session_epoch=1,
                            wrap_up_code="resolved",
                        ),
                    )
                    for agent, conv, epoch, kind in commands
                ],
            )


async def _put_agents(redis: Redis, keys: Keys) -> None:
    """The agents as presence writes them (presence's own fields; the router's used:* fields are left alone)."""
    for name in AGENTS:
        await put_agent(redis, keys, T, name, GROUPS, chat=2, email=2)


@contextlib.asynccontextmanager
async def _own_redis(tmp_path: Path) -> AsyncIterator[LocalRedis]:
    server = LocalRedis(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Load:
    """Customers' messages, each acknowledged by Kafka before it counts as sent."""

    producer: RecordProducer
    sent: dict[str, list[str]] = field(default_factory=dict)

    async def send(self, conv: str, mid: str, text: str) -> None:
        await self.producer.send_many(self.producer.topics.inbound, [(conv, message(T, conv, mid, text))])
        self.sent.setdefault(conv, []).append(mid)  # acknowledged (acks=all): the promise starts here

    async def feed(self, conversations: int, rounds: int, prefix: str) -> None:
        for n in range(rounds):
            for c in range(conversations):
                await self.send(f"{prefix}{c}", f"{prefix}m{c}-{n}", TEXTS[(c + n) % len(TEXTS)])
                await asyncio.sleep(0.004)

    def acked(self) -> list[str]:
        return [mid for mids in self.sent.values() for mid in mids]


async def _lose_redis(server: LocalRedis, redis: Redis, keys: Keys, load: Load, desks: Desks) -> dict[str, float]:
    """SIGKILL Redis mid-load, keep acknowledging messages for a second, bring it back empty; the figures (seconds
    after Redis came back): the router's state rebuilt, the first message a desk had not had before reached one,
    and a new conversation sent then (behind the queue the outage built) reached a desk."""
    had = set(desks.got)
    server.kill()
    await asyncio.sleep(1.0)
    server.restart(empty=True)
    back = time.monotonic()
    await _put_agents(redis, keys)  # presence's rebuild (roster + presence topic) in the real stack
    await load.send("probe", "probe-m0", "快递到哪了")
    await eventually(lambda: _exists(redis, keys.state_mark(T, "router")), 60, "the router's state rebuilt")
    rebuilt = time.monotonic() - back
    await eventually(lambda: _true(bool(set(desks.got) - had)), 60, "a new message on a desk")
    await eventually(lambda: _true("probe-m0" in desks.got), 60, "a new conversation on a desk")
    first = min(at for mid, at in desks.got_at.items() if mid not in had) - back
    return {"rebuilt": rebuilt, "first": first, "probe": desks.got_at["probe-m0"] - back}


async def _check_outcome(redis: Redis, keys: Keys, load: Load, desks: Desks) -> dict[str, int]:
    """Wait until every acknowledged message is on a desk and every conversation closed; check one owner each."""
    config = load_config_file(REPO / "config" / "routing" / f"{T}.yaml")

    async def settled() -> bool:
        if any(mid not in desks.got for mid in load.acked()):
            return False
        state = await read_state(redis, keys, config, set(load.sent))
        return all(f.get("state") == "closed" for f in state.convs.values())

    try:
        await eventually(settled, 120, "every acknowledged message on a desk, every conversation closed")
    except AssertionError as exc:
        missing = [mid for mid in load.acked() if mid not in desks.got]
        raise AssertionError(f"{exc}: {len(missing)} acknowledged messages on no desk, e.g. {missing[:5]}") from exc
    state = await read_state(redis, keys, config, set(load.sent))
    holders = _check_capacity(state, True)
    for conv, fields in state.convs.items():
        _check_conversation(state, config, conv, fields, holders, int(time.time() * 1000))
    return {
        "acked": len(load.acked()),
        "lost": sum(1 for mid in load.acked() if mid not in desks.got),
        "on_two_desks": sum(1 for agents in desks.got.values() if len(agents) > 1),
        "double_owners": sum(1 for agents in desks.assigned.values() if len(agents) > 1),
        "outboxes_lost": len(desks.outbox_lost),
    }


async def test_redis_killed_under_load_and_restarted_empty_loses_and_doubles_nothing(
    settings: ServiceSettings, tmp_path: Path
) -> None:
    async with _own_redis(tmp_path) as server:
        own = settings.model_copy(update={"redis_url": server.url})
        redis = redis_client(own)
        keys = Keys(own.key_prefix)
        await _put_agents(redis, keys)
        producer = RecordProducer(own)
        await producer.start()
        started = await asyncio.gather(start_router(own, tmp_path, "router-a"), start_router(own, tmp_path, "router-b"))
        desks = Desks(redis, keys, producer)
        desk_task = asyncio.create_task(desks.run())
        load = Load(producer)
        feeding = asyncio.create_task(load.feed(60, 4, "c"))
        try:
            await eventually(lambda: _true(len(desks.got) >= 60), 60, "load under way")
            times = await _lose_redis(server, redis, keys, load, desks)
            await feeding
            await load.feed(20, 2, "after")  # and routing goes on as usual
            counts = await _check_outcome(redis, keys, load, desks)
            print(
                f"\nRedis SIGKILLed under load and restarted empty: {counts}; seconds after Redis came back: router "
                f"state rebuilt {times['rebuilt']:.2f}, routing resumed (first new message on a desk) "
                f"{times['first']:.2f}, a new conversation behind the outage's queue on a desk {times['probe']:.2f}"
            )
            assert counts["lost"] == 0
            assert counts["on_two_desks"] == 0
            assert counts["double_owners"] == 0
            assert counts["outboxes_lost"] > 0  # the loss really happened under the desks
        finally:
            feeding.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeding
            desks.stop.set()
            await desk_task
            for proc, _ in started:
                await stop_router(proc)
            await producer.stop()
            await redis.aclose()


async def _true(value: bool) -> bool:
    return value


async def _exists(redis: Redis, key: str) -> bool:
    try:
        return bool(await redis.exists(key))
    except RedisError:
        return False
