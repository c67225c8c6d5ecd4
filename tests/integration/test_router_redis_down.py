"""Redis unreachable: the router raises TransientError (the consumer loop pauses and retries the same batch),
guesses nothing, and when Redis is back the same batch routes exactly once."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

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


async def test_redis_outage_pauses_routing_and_the_retry_routes_once(tmp_path: Path, repo_root: Path) -> None:
    server = LocalRedis(tmp_path / "redis")
    server.start()
    redis = redis_client(ServiceSettings(redis_url=server.url))
    try:
        keys = Keys("down")
        store = ConfigStore(repo_root / "config" / "routing")
        store.poll()
        sink = MemorySink()
        router = Router(redis, keys, store, sink)
        await put_agent(redis, keys, T, "lina", ["presales"])
        assert await router.handle_inbound([message(T, "c1", "m1")]) == []
        await redis.save()  # the restarted server loads this snapshot: an outage, not a loss of data

        server.stop()
        batch = [message(T, "c1", "m2", "还在吗"), message(T, "c2", "m3")]
        with pytest.raises(TransientError):
            await router.handle_inbound(batch)
        assert len(sink.events) == 1

        server.start()
        assert await router.handle_inbound(batch) == []
        assert await router.handle_inbound(batch) == []  # and a redelivery after that changes nothing
        desk = [(e.conversation_id, e.message.message_id) for e in await outbox(redis, keys, T, "lina")]
        assert desk == [("c1", "m1"), ("c1", "m2"), ("c2", "m3")]
    finally:
        await redis.aclose()
        server.stop()


async def test_a_cluster_outage_pauses_routing_and_the_retry_routes_once(tmp_path: Path, repo_root: Path) -> None:
    """The same on Redis Cluster: every node stops answering (SIGSTOP keeps their data, as a network outage would),
    routing raises TransientError, and once the nodes answer again the same batch routes exactly once."""
    cluster = LocalRedisCluster(tmp_path / "cluster")
    cluster.start()
    redis = redis_client(ServiceSettings(redis_url=cluster.url))
    try:
        keys = Keys("down")
        store = ConfigStore(repo_root / "config" / "routing")
        store.poll()
        sink = MemorySink()
        router = Router(redis, keys, store, sink)
        await put_agent(redis, keys, T, "lina", ["presales"])
        assert await router.handle_inbound([message(T, "c1", "m1")]) == []

        for proc in cluster.procs:
            proc.send_signal(signal.SIGSTOP)
        batch = [message(T, "c1", "m2", "还在吗"), message(T, "c2", "m3")]
        try:
            with pytest.raises(TransientError):
                await router.handle_inbound(batch)
        finally:
            for proc in cluster.procs:
                proc.send_signal(signal.SIGCONT)
        assert len(sink.events) == 1

        assert await router.handle_inbound(batch) == []
        assert await router.handle_inbound(batch) == []  # and a redelivery after that changes nothing
        desk = [(e.conversation_id, e.message.message_id) for e in await outbox(redis, keys, T, "lina")]
        assert desk == [("c1", "m1"), ("c1", "m2"), ("c2", "m3")]
    finally:
        await redis.aclose()
        cluster.stop()
