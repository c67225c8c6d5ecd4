"""Redis unreachable: the router raises TransientError (the consumer loop pauses and retries the same batch),
guesses nothing, and when Redis is back the same batch routes exactly once."""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from redis.asyncio import Redis

from switchboard.router.engine import MemorySink, Router
from switchboard.router.reload import ConfigStore
from switchboard.runtime.errors import TransientError
from switchboard.runtime.redis_client import redis_client
from switchboard.runtime.settings import ServiceSettings
from switchboard.state.keys import Keys
from switchboard_tools.stack.redis import LocalRedis
from tests.redis_cluster import LocalRedisCluster
from tests.router_support import message, outbox, put_agent

pytestmark = pytest.mark.broker

T = "tmall-flagship"


async def _outage_then_retry(
    redis: Redis,
    repo_root: Path,
    before: Callable[[], Awaitable[None]],
    down: Callable[[], None],
    up: Callable[[], None],
) -> None:
    """Route one message, take Redis down: the next batch raises TransientError and publishes nothing; bring it
    back: the same batch routes exactly once, and a redelivery after that changes nothing."""
    keys = Keys("down")
    store = ConfigStore(repo_root / "config" / "routing")
    store.poll()
    sink = MemorySink()
    router = Router(redis, keys, store, sink)
    await put_agent(redis, keys, T, "lina", ["presales"])
    assert await router.handle_inbound([message(T, "c1", "m1")]) == []
    await before()

    batch = [message(T, "c1", "m2", "还在吗"), message(T, "c2", "m3")]
    down()
    try:
        with pytest.raises(TransientError):
            await router.handle_inbound(batch)
    finally:
        up()
    assert len(sink.events) == 1

    assert await router.handle_inbound(batch) == []
    assert await router.handle_inbound(batch) == []
    desk = [(e.conversation_id, e.message.message_id) for e in await outbox(redis, keys, T, "lina")]
    assert desk == [("c1", "m1"), ("c1", "m2"), ("c2", "m3")]


async def test_redis_outage_pauses_routing_and_the_retry_routes_once(tmp_path: Path, repo_root: Path) -> None:
    server = LocalRedis(tmp_path / "redis")
    server.start()
    redis = redis_client(ServiceSettings(redis_url=server.url))

    async def save() -> None:
        await redis.save()  # the restarted server loads this snapshot: an outage, not a loss of data

    try:
        await _outage_then_retry(redis, repo_root, save, server.stop, server.start)
    finally:
        await redis.aclose()
        server.stop()


async def test_a_cluster_outage_pauses_routing_and_the_retry_routes_once(tmp_path: Path, repo_root: Path) -> None:
    """The same on Redis Cluster: every node stops answering (SIGSTOP keeps their data, as a network outage would),
    routing raises TransientError, and once the nodes answer again the same batch routes exactly once."""
    cluster = LocalRedisCluster(tmp_path / "cluster")
    cluster.start()
    redis = redis_client(ServiceSettings(redis_url=cluster.url))

    def signal_all(sig: signal.Signals) -> Callable[[], None]:
        def send() -> None:
            for proc in cluster.procs:
                proc.send_signal(sig)

        return send

    async def nothing() -> None:
        return None

    try:
        await _outage_then_retry(redis, repo_root, nothing, signal_all(signal.SIGSTOP), signal_all(signal.SIGCONT))
    finally:
        await redis.aclose()
        cluster.stop()
