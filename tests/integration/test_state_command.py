"""`switchboard state marks | rebuild` against a running router process (docs/state.md, "When Redis loses its
data"): forgetting a tenant's marks makes the router rebuild over the state Redis kept, which changes nothing that is
as the topics say: no conversation assigned again, no desk event sent twice, no slot counted twice."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from redis.asyncio import Redis

from switchboard.runtime.kafka import RecordProducer
from switchboard.runtime.settings import ServiceSettings
from switchboard.state.keys import Keys
from tests.helpers import eventually, service_env
from tests.integration.router_procs import start_router, stop_router
from tests.router_support import message, outbox, put_agent

pytestmark = [pytest.mark.broker]

T = "tmall-flagship"


async def _state(settings: ServiceSettings, *args: str) -> tuple[int, str]:
    """Run `python -m switchboard state <args>` with the deployment's environment."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "switchboard",
        "state",
        *args,
        env=service_env(settings, 0),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode() + err.decode()


async def test_state_rebuild_makes_the_router_rebuild_over_kept_state_and_change_nothing(
    settings: ServiceSettings, redis: Redis, tmp_path: Path
) -> None:
    keys = Keys(settings.key_prefix)
    mark = keys.state_mark(T, "router")
    await put_agent(redis, keys, T, "lina", ["presales"], chat=1)
    producer = RecordProducer(settings)
    await producer.start()
    router, _ = await start_router(settings, tmp_path, "router-1")
    try:
        topics = producer.topics
        await producer.send(topics.inbound, "c1", message(T, "c1", "m1", "这件衣服有XL码吗"))

        async def lina_has(n: int) -> bool:
            return len(await outbox(redis, keys, T, "lina")) >= n

        await eventually(lambda: lina_has(1), 30, "c1 on lina's desk")
        await producer.send(topics.inbound, "c2", message(T, "c2", "m2", "颜色有哪些"))

        async def c2_queued() -> bool:
            return await redis.hget(keys.conversation(T, "c2"), "state") == b"queued"

        await eventually(c2_queued, 30, "c2 queued")
        before = await outbox(redis, keys, T, "lina")
        c1_epoch = await redis.hget(keys.conversation(T, "c1"), "epoch")

        code, out = await _state(settings, "marks", "--tenant", T)
        assert code == 0, out
        [row] = [line.split() for line in out.splitlines() if line.startswith(T) and " router " in line]
        assert row[2] == "yes" and row[-1] == "router-1", out

        code, out = await _state(settings, "rebuild", "--tenant", T, "--service", "router")
        assert (code, out.strip()) == (
            0,
            f"forgot {T}/router: its services rebuild it before they write for the tenant again",
        )
        assert not await redis.exists(mark)

        # The tenant's next record: the router rebuilds first (the mark is back), then handles it.
        await producer.send(topics.inbound, "c1", message(T, "c1", "m1b", "谢谢"))
        await eventually(lambda: lina_has(len(before) + 1), 30, "m1b on lina's desk")
        assert await redis.exists(mark)
        desk = await outbox(redis, keys, T, "lina")
        assert desk[: len(before)] == before
        assert [(e.conversation_id, e.message.message_id) for e in desk[len(before) :]] == [("c1", "m1b")]
        assert await redis.hget(keys.conversation(T, "c1"), "epoch") == c1_epoch
        assert await redis.zrange(keys.queue_channel(T, "presales", "chat"), 0, -1) == [b"c2"]
        assert await redis.hget(keys.agent(T, "lina"), "used:chat") == b"1"
    finally:
        assert await stop_router(router) == 0
        await producer.stop()


async def test_state_commands_refuse_bad_usage_and_say_when_there_is_nothing_to_forget(
    settings: ServiceSettings,
) -> None:
    code, out = await _state(settings, "rebuild", "--tenant", "no-such-shop")
    assert code == 0 and "no marks to forget" in out
    code, out = await _state(settings, "rebuild")
    assert code == 2 and "--tenant" in out
    code, out = await _state(settings, "rebuild", "--tenant", T, "--service", "gateway")
    assert code == 2 and "invalid choice" in out
