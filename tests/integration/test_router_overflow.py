"""Re-evaluating queued conversations' overflow rings on a long queue (router/overflow.py), against real Redis: a
sweep covers the head and one page further back in turn, a profile switch the whole queue at once."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis.asyncio import Redis

from switchboard.router.engine import MemorySink, Router
from switchboard.router.overflow import PAGE
from switchboard.router.reload import ConfigStore
from switchboard.runtime.settings import ServiceSettings
from switchboard.state.keys import Keys
from tests.redis_cluster import on_both_redis_backends
from tests.router_support import message, now_ms

pytestmark = [pytest.mark.broker, on_both_redis_backends]

T = "long-queue"
ROUTING = f"""
tenant: {T}
default_group: presales
skill_groups:
  - name: presales
    overflow:
      - {{group: general, after_s: 60}}
  - {{name: general}}
"""
WAITING = 2 * PAGE + 50


async def widened(redis: Redis, keys: Keys) -> int:
    return int(await redis.zcard(keys.queue_channel(T, "general", "chat")))


@pytest.mark.parametrize("whole", [False, True], ids=["sweeps", "switch"])
async def test_every_queued_conversation_is_reevaluated(
    redis: Redis, settings: ServiceSettings, tmp_path: Path, whole: bool
) -> None:
    (tmp_path / f"{T}.yaml").write_text(ROUTING, encoding="utf-8")
    configs = ConfigStore(tmp_path)
    configs.poll()
    keys = Keys(settings.key_prefix)
    clock = [now_ms()]
    router = Router(redis, keys, configs, MemorySink(), clock=lambda: clock[0])
    batch = [message(T, f"c{i:03d}", f"m{i:03d}") for i in range(WAITING)]
    assert await router.handle_inbound(batch) == []
    assert await redis.zcard(keys.queue_channel(T, "presales", "chat")) == WAITING
    await router.upkeep.sweep()
    assert await widened(redis, keys) == 0  # nobody waited a minute yet
    clock[0] += 61_000
    config = configs.get(T)
    assert config is not None
    if whole:
        await router.upkeep.overflow.run(config, clock[0], whole=True)
        assert await widened(redis, keys) == WAITING
        return
    await router.upkeep.sweep()
    assert PAGE < await widened(redis, keys) < WAITING  # the head and one page further back
    await router.upkeep.sweep()
    assert await widened(redis, keys) == WAITING  # the other page in turn
    conv = await redis.hget(keys.conversation(T, f"c{WAITING - 1:03d}"), "queues")
    assert conv == b"presales,general"
