"""Service level and estimated wait kept in Redis (state/figures.py): shared by router replicas, per channel."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis.asyncio import Redis

from switchboard.contracts import RoutingEventType
from switchboard.router.engine import MemorySink, Router
from switchboard.router.reload import ConfigStore
from switchboard.state.figures import (
    ABANDONED,
    ANSWERED,
    Outcome,
    read_estimate,
    read_service_level,
    record_outcomes,
)
from switchboard.state.keys import Keys
from tests.redis_cluster import on_both_redis_backends
from tests.router_support import message, now_ms, put_agent

pytestmark = [pytest.mark.broker, on_both_redis_backends]

T = "tmall-flagship"


def _router(redis: Redis, keys: Keys, repo_root: Path, clock: list[int], name: str) -> Router:
    store = ConfigStore(repo_root / "config" / "routing")
    store.poll()
    return Router(redis, keys, store, MemorySink(), instance=name, clock=lambda: clock[0])


async def test_service_level_counts_abandoned_and_those_still_waiting_past_the_target(
    redis: Redis, prefix: str
) -> None:
    keys = Keys(prefix.rstrip("."))
    now = now_ms()
    outcomes = [
        Outcome(ANSWERED, "fast-chat", "presales", "chat", now - 10_000, now),  # 10 s: within 30 s
        Outcome(ANSWERED, "slow-chat", "presales", "chat", now - 50_000, now),  # 50 s: a miss
        Outcome(ABANDONED, "gone-chat", "presales", "chat", now - 5_000, now),  # abandoned: a miss
        Outcome(ANSWERED, "fast-mail", "presales", "email", now - 20_000, now),  # 20 s: within
        Outcome(ANSWERED, "other-group", "orders", "chat", now - 1_000, now),
    ]
    assert await record_outcomes(redis, keys, T, outcomes) == 5
    # A redelivered or re-sent decision counts nothing twice, nor an abandonment after the answer.
    assert await record_outcomes(redis, keys, T, outcomes[:2]) == 0
    assert (
        await record_outcomes(redis, keys, T, [Outcome(ABANDONED, "fast-chat", "presales", "chat", now - 10_000, now)])
        == 0
    )
    # One chat customer has waited 40 s and is still queued: a miss already; one who waited 3 s is not counted yet.
    for conv, arrived in (("waiting-long", now - 40_000), ("waiting-short", now - 3_000)):
        await redis.hset(
            keys.conversation(T, conv), mapping={"group": "presales", "enqueued_ms": arrived, "state": "queued"}
        )
        await redis.zadd(keys.queue_channel(T, "presales", "chat"), {conv: arrived})

    chat = await read_service_level(redis, keys, T, "presales", "chat", target_s=30, now_ms=now)
    assert (chat.answered, chat.answered_within, chat.abandoned, chat.waiting_over) == (2, 1, 1, 1)
    assert chat.level == pytest.approx(1 / 4)
    assert chat.average_answer_s == pytest.approx(30.0)
    both = await read_service_level(redis, keys, T, "presales", target_s=30, now_ms=now)
    assert both.level == pytest.approx(2 / 5)
    # A longer target turns the 50 s answer and the 40 s waiter into hits (60 s is a bin edge: exact).
    relaxed = await read_service_level(redis, keys, T, "presales", "chat", target_s=60, now_ms=now)
    assert (relaxed.answered_within, relaxed.waiting_over, relaxed.level) == (2, 0, pytest.approx(2 / 3))
    # Outcomes older than the window are out of it; a group without any has no level.
    later = await read_service_level(
        redis, keys, T, "presales", "chat", target_s=30, window_s=300, now_ms=now + 600_000
    )
    assert (later.answered, later.abandoned) == (0, 0)
    assert (await read_service_level(redis, keys, T, "complaints", target_s=30, now_ms=now)).level is None


async def test_every_router_replica_and_a_restarted_one_see_the_same_service_level(
    redis: Redis, prefix: str, repo_root: Path
) -> None:
    keys = Keys(prefix.rstrip("."))
    clock = [now_ms()]
    first = _router(redis, keys, repo_root, clock, "router-a")
    await put_agent(redis, keys, T, "lina", ["orders"], chat=1)
    # Orders overflow to the generalists when its service level falls below 0.7.
    await put_agent(redis, keys, T, "gao", ["general"], chat=1)
    text = "我想修改地址"
    assert await first.handle_inbound([message(T, "o1", "m1", text)]) == []
    assert await first.handle_inbound([message(T, "o2", "m2", text)]) == []  # lina is full: queued
    clock[0] += 120_000
    await first.upkeep.sweep()  # o2 waited 2 min: the after_s ring gives it to gao, answered late (a miss)
    config = first.context.configs.get(T)
    assert config is not None
    level = await read_service_level(
        redis, keys, T, "orders", target_s=config.queue.service_level_target_s, now_ms=clock[0]
    )
    assert (level.answered, level.answered_within) == (2, 1)

    # Another replica, and one started after a restart, read the same level: no process memory involved.
    second = _router(redis, keys, repo_root, clock, "router-b")
    snap = await second.context.snapshot(config, {"orders"})
    assert snap.stats["orders"].level == pytest.approx(0.5)
    sink = first.context.sink
    assert isinstance(sink, MemorySink)
    assigned = [e for e in sink.events if e.type == RoutingEventType.ROUTING_EVENT_ASSIGNED]
    assert {e.conversation_id for e in assigned} == {"o1", "o2"}


async def test_the_estimated_wait_of_a_channel_counts_only_its_own_queue(
    redis: Redis, prefix: str, repo_root: Path
) -> None:
    keys = Keys(prefix.rstrip("."))
    clock = [now_ms()]
    router = _router(redis, keys, repo_root, clock, "router-a")
    # presales: avg_handle_s 180; lina has 2 chat and 1 e-mail slots, both taken by the first two arrivals.
    await put_agent(redis, keys, T, "lina", ["presales"], chat=1, email=1, phone=0)
    batch = [message(T, "chat-0", "mc0", "这个尺码合适吗")]
    batch += [message(T, f"mail-{i}", f"mm{i}", "这个尺码合适吗", channel="email") for i in range(6)]
    assert await router.handle_inbound(batch) == []
    await router.upkeep.sweep()
    chat = await read_estimate(redis, keys, T, "presales", "chat")
    mail = await read_estimate(redis, keys, T, "presales", "email")
    assert chat is not None and mail is not None
    assert (chat.queue_length, mail.queue_length) == (0, 5)
    assert chat.seconds_per_position == pytest.approx(180.0)
    assert chat.wait_s() == pytest.approx(180.0)  # the next chat customer is first in line
    assert mail.wait_s() == pytest.approx(6 * 180.0)
    assert mail.wait_s(position=2) == pytest.approx(360.0)
    assert chat.at_ms == clock[0]
    assert await read_estimate(redis, keys, T, "presales", "phone") is not None
    assert await read_estimate(redis, keys, T, "no-such-group", "chat") is None
