"""State marks on real Redis: a missing mark means rebuild once; a second replica waits while the first rebuilds."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from switchboard.state.keys import Keys
from switchboard.state.marks import RebuildPending, StateMarks
from tests.redis_cluster import on_both_redis_backends

pytestmark = [pytest.mark.broker, on_both_redis_backends]


async def test_a_missing_mark_rebuilds_once_and_a_flush_rebuilds_again(redis: Redis, prefix: str) -> None:
    keys = Keys(prefix.rstrip("."))
    marks = StateMarks(redis, keys, "router", "r-1")
    rebuilt: list[str] = []

    async def rebuild(tenant: str) -> None:
        rebuilt.append(tenant)

    assert await marks.ensure("shop-a", rebuild) is True
    assert await marks.ensure("shop-a", rebuild) is False
    assert rebuilt == ["shop-a"]
    assert await marks.present("shop-a")
    assert not await StateMarks(redis, keys, "presence", "p-1").present("shop-a")
    await redis.delete(marks.key("shop-a"))  # what a Redis restarted empty looks like to the service
    assert await marks.ensure("shop-a", rebuild) is True
    assert rebuilt == ["shop-a", "shop-a"]


async def test_a_second_replica_waits_for_the_first_rebuild(redis: Redis, prefix: str) -> None:
    keys = Keys(prefix.rstrip("."))
    first, second = StateMarks(redis, keys, "router", "r-1"), StateMarks(redis, keys, "router", "r-2")
    started, release = asyncio.Event(), asyncio.Event()

    async def slow(tenant: str) -> None:
        started.set()
        await release.wait()

    running = asyncio.create_task(first.ensure("shop-a", slow))
    await started.wait()
    with pytest.raises(RebuildPending):
        await second.ensure("shop-a", slow)
    release.set()
    assert await running is True
    assert await second.ensure("shop-a", slow) is False


async def test_a_failed_rebuild_leaves_no_mark_and_no_lock(redis: Redis, prefix: str) -> None:
    marks = StateMarks(redis, Keys(prefix.rstrip(".")), "presence", "p-1")

    async def broken(tenant: str) -> None:
        raise RuntimeError("topic unreadable")

    with pytest.raises(RuntimeError):
        await marks.ensure("shop-a", broken)
    assert not await marks.present("shop-a")

    async def fine(tenant: str) -> None:
        return None

    assert await marks.ensure("shop-a", fine) is True
