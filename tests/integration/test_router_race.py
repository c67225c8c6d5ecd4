"""Several router processes on one tenant, and a router SIGKILLed under load: claims race on the same agents,
partitions move between processes, records are redelivered — and still every message reaches exactly one
owner's desk once, in order, no agent is ever over capacity, and nothing waits while an agent has room."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
from redis.asyncio import Redis

from switchboard.routing.config import load_config_file
from switchboard.runtime.kafka import RecordProducer
from switchboard.runtime.settings import ServiceSettings
from switchboard.state.keys import Keys
from tests.helpers import eventually
from tests.integration.router_procs import REPO, DeskSimulator, start_router, stop_router
from tests.redis_cluster import on_both_redis_backends
from tests.router_support import check_invariants, message, put_agent, read_state

pytestmark = [pytest.mark.broker, on_both_redis_backends]

T = "tmall-flagship"
TEXTS = ["这个尺码合适吗", "我要退货", "快递到哪了", "优惠券怎么用", "帮我改地址"]
GROUPS = [["presales", "general"], ["after_sales", "logistics"], ["orders", "promotions"], ["presales", "orders"]]


async def _agents(redis: Redis, keys: Keys, count: int) -> list[str]:
    names = [f"agent-{i}" for i in range(count)]
    for i, name in enumerate(names):
        groups = GROUPS[i % len(GROUPS)]
        await put_agent(redis, keys, T, name, [*groups, "general", "logistics", "promotions"], chat=2, email=2)
    return names


def _traffic(conversations: int, per_conversation: int) -> list[tuple[str, str, str]]:
    """(conversation, message id, text), interleaved across conversations like real traffic."""
    return [
        (f"c{c}", f"m{c}-{n}", TEXTS[(c + n) % len(TEXTS)])
        for n in range(per_conversation)
        for c in range(conversations)
    ]


async def _produce(producer: RecordProducer, traffic: list[tuple[str, str, str]], chunk: int, pause_s: float) -> None:
    for start in range(0, len(traffic), chunk):
        part = traffic[start : start + chunk]
        await producer.send_many(producer.topics.inbound, [(c, message(T, c, m, text)) for c, m, text in part])
        await asyncio.sleep(pause_s)


async def _settled_and_consistent(
    redis: Redis, keys: Keys, traffic: list[tuple[str, str, str]], desk: DeskSimulator, timeout: float
) -> None:
    config = load_config_file(REPO / "config" / "routing" / f"{T}.yaml")
    sent: dict[str, list[str]] = {}
    for conv, mid, _ in traffic:
        sent.setdefault(conv, []).append(mid)
    last_error: list[str] = []

    async def settled() -> bool:
        state = await read_state(redis, keys, config, set(sent))
        delivered = sum(
            1 for events in state.outboxes.values() for e in events if e.type in (2, 3) and e.message.message_id
        )
        if delivered < len(traffic) or any(f.get("state") != "closed" for f in state.convs.values()):
            last_error[:] = [f"{delivered} of {len(traffic)} delivered"]
            return False
        try:
            check_invariants(state, config, sent)
        except AssertionError as exc:
            last_error[:] = [str(exc)]
            return False
        return True

    try:
        await eventually(settled, timeout, "every message delivered once and every conversation closed")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {last_error}") from exc
    state = await read_state(redis, keys, config, set(sent))
    check_invariants(state, config, sent)
    assert desk.over_capacity == []


@pytest.mark.parametrize("routers", [2, 3])
async def test_routers_racing_on_one_tenant_keep_every_invariant(
    settings: ServiceSettings, redis: Redis, tmp_path: Path, routers: int
) -> None:
    keys = Keys(settings.key_prefix)
    agents = await _agents(redis, keys, 6)
    producer = RecordProducer(settings)
    await producer.start()
    started = await asyncio.gather(*(start_router(settings, tmp_path, f"router-{i}") for i in range(routers)))
    procs = [proc for proc, _ in started]
    desk = DeskSimulator(redis, keys, producer, T, agents)
    desk_task = asyncio.create_task(desk.run())
    try:
        traffic = _traffic(conversations=80, per_conversation=3)
        await _produce(producer, traffic, chunk=60, pause_s=0.05)
        await _settled_and_consistent(redis, keys, traffic, desk, timeout=90)
    finally:
        desk.stop()
        await desk_task
        for proc in procs:
            assert await stop_router(proc) == 0
        await producer.stop()


async def _kill_under_load(
    settings: ServiceSettings, redis: Redis, tmp_path: Path, conversations: int, kills: int
) -> None:
    keys = Keys(settings.key_prefix)
    agents = await _agents(redis, keys, 6)
    producer = RecordProducer(settings)
    await producer.start()
    (steady, _), (victim, _) = await asyncio.gather(
        start_router(settings, tmp_path, "router-steady"), start_router(settings, tmp_path, "router-victim")
    )
    desk = DeskSimulator(redis, keys, producer, T, agents)
    desk_task = asyncio.create_task(desk.run())
    traffic = _traffic(conversations=conversations, per_conversation=3)
    feeding = asyncio.create_task(_produce(producer, traffic, chunk=30, pause_s=0.1))
    try:
        for round_ in range(kills):

            async def some_delivered(target: int = (round_ + 1) * len(traffic) // (kills + 2)) -> bool:
                return desk.closed >= target // 3

            await eventually(some_delivered, 60, "load under way")
            victim.kill()  # SIGKILL: no graceful anything
            assert await victim.wait() == -9
            victim, _ = await start_router(settings, tmp_path, f"router-victim-{round_}")
        await feeding
        await _settled_and_consistent(redis, keys, traffic, desk, timeout=120)
    finally:
        feeding.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await feeding
        desk.stop()
        await desk_task
        assert await stop_router(steady) == 0
        await stop_router(victim)
        await producer.stop()


async def test_router_sigkilled_under_load_and_restarted_loses_and_duplicates_nothing(
    settings: ServiceSettings, redis: Redis, tmp_path: Path
) -> None:
    await _kill_under_load(settings, redis, tmp_path, conversations=100, kills=1)


@pytest.mark.slow
async def test_router_sigkilled_repeatedly_under_heavier_load(
    settings: ServiceSettings, redis: Redis, tmp_path: Path
) -> None:
    await _kill_under_load(settings, redis, tmp_path, conversations=600, kills=3)
