"""Session fixtures: a real Kafka broker and Redis server, and a fresh set of topics and keys per test.

Kafka and Redis come from KAFKA_BOOTSTRAP / REDIS_URL when set, from testcontainers when a Docker engine answers,
and otherwise from local processes (Kafka jars from Maven Central, Debian's redis-server).

Redis Cluster: `redis_cluster_url` starts a real three-master cluster once per session, on first use
(tests/redis_cluster.py; REDIS_CLUSTER_URL points at an existing one instead). A test or module runs on both one
server and the cluster with `tests.redis_cluster.on_both_redis_backends` (parametrizes `redis_backend`); the
`settings`, `redis` and `redis_url_for_test` fixtures then use the backend's URL, so the test body and the services
it starts (REDIS_URL `redis+cluster://...`) need no change. To bring another flow to the cluster, e.g. the router's:
mark its module `pytestmark = [..., on_both_redis_backends]` and build clients with
`switchboard.runtime.redis_client` (or the `redis` fixture), never `Redis.from_url`.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from redis.asyncio import Redis

from switchboard.runtime.kafka import RecordProducer, ensure_topics
from switchboard.runtime.redis_client import connect_url
from switchboard.runtime.settings import ServiceSettings
from switchboard.runtime.topics import Topics
from switchboard_tools.stack.kafka import LocalKafka
from switchboard_tools.stack.redis import LocalRedis
from tests import containers
from tests.redis_cluster import LocalRedisCluster

TEST_PARTITIONS = 3


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Kafka bootstrap address for the whole session."""
    source = containers.backend(os.environ.get("KAFKA_BOOTSTRAP"))
    if source == "given":
        yield os.environ["KAFKA_BOOTSTRAP"]
        return
    if source == "docker":
        with containers.kafka_container() as bootstrap:
            asyncio.run(_wait_for_broker(bootstrap, timeout=120.0))
            yield bootstrap
        return
    broker = LocalKafka(tmp_path_factory.mktemp("kafka"))
    broker.start()
    try:
        asyncio.run(_wait_for_broker(broker.bootstrap))
        yield broker.bootstrap
    finally:
        broker.stop()


async def _wait_for_broker(bootstrap: str, timeout: float = 60.0) -> None:
    async with asyncio.timeout(timeout):
        while True:
            admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
            try:
                await admin.start()
                cluster = await admin.describe_cluster()
                if cluster["brokers"]:
                    return
            except Exception:
                await asyncio.sleep(0.3)
            finally:
                await admin.close()


async def _wait_for_redis(url: str, timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while True:
            client = connect_url(url)
            try:
                if await client.ping():
                    return
            except Exception:
                await asyncio.sleep(0.3)
            finally:
                await client.aclose()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis URL for the whole session."""
    source = containers.backend(os.environ.get("REDIS_URL"))
    if source == "given":
        yield os.environ["REDIS_URL"]
        return
    if source == "docker":
        with containers.redis_container() as url:
            asyncio.run(_wait_for_redis(url))
            yield url
        return
    server = LocalRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A `redis+cluster://` URL of a three-master Redis Cluster for the whole session (started on first use)."""
    if os.environ.get("REDIS_CLUSTER_URL"):
        yield os.environ["REDIS_CLUSTER_URL"]
        return
    cluster = LocalRedisCluster(tmp_path_factory.mktemp("redis-cluster"))
    try:
        cluster.start()
        yield cluster.url
    finally:
        cluster.stop()


@pytest.fixture
def redis_backend() -> str:
    """Which Redis the test runs on: "single" unless parametrized (`tests.redis_cluster.on_both_redis_backends`)."""
    return "single"


@pytest.fixture
def redis_url_for_test(redis_backend: str, request: pytest.FixtureRequest) -> str:
    """The URL of the test's Redis backend (the cluster is started only for tests that ask for it)."""
    if redis_backend == "cluster":
        return str(request.getfixturevalue("redis_cluster_url"))
    if redis_backend != "single":
        raise ValueError(f"unknown redis_backend {redis_backend!r}")
    return str(request.getfixturevalue("redis_url"))


@pytest.fixture
def prefix() -> str:
    """A prefix unique to this test, for its topics, consumer groups and Redis keys."""
    return f"t{uuid.uuid4().hex[:10]}."


@pytest.fixture
async def settings(kafka_bootstrap: str, redis_url_for_test: str, prefix: str) -> AsyncIterator[ServiceSettings]:
    """Service settings pointing at the session's Kafka and Redis, with this test's own topics created.

    The topics are deleted after the test: a broker keeps files open for every partition, and a whole session's
    worth of them would run it out of file descriptors.
    """
    yield await topic_settings(
        kafka_bootstrap, redis_url_for_test, prefix, service_name="test", shutdown_grace_s=5.0, retry_backoff_s=0.05
    )
    await _delete_topics(kafka_bootstrap, prefix)


async def topic_settings(kafka_bootstrap: str, redis_url: str, prefix: str, **overrides: Any) -> ServiceSettings:
    """Settings on `prefix` for topics and keys, with its topics created, serving HTTP on a free loopback port."""
    await ensure_topics(kafka_bootstrap, Topics(prefix).specs(TEST_PARTITIONS))
    return ServiceSettings(
        kafka_bootstrap=kafka_bootstrap,
        redis_url=redis_url,
        topic_prefix=prefix,
        key_prefix=prefix.rstrip("."),
        http_port=0,
        http_host="127.0.0.1",
        **overrides,
    )


async def _delete_topics(bootstrap: str, prefix: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        mine = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if mine:
            await admin.delete_topics(mine)
    finally:
        await admin.close()


@pytest.fixture
async def redis(redis_url_for_test: str) -> AsyncIterator[Redis]:
    """A client for the test's Redis (a RedisCluster on the cluster backend); closed after it."""
    client = connect_url(redis_url_for_test)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def producer(settings: ServiceSettings) -> AsyncIterator[RecordProducer]:
    """A started RecordProducer on the test's settings, standing in for another service; stopped after the test."""
    producer = RecordProducer(settings)
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


@pytest.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[LocalRedis]:
    """A Redis only this test uses, so it may stop, kill or empty it."""
    server = LocalRedis(tmp_path / "redis")
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)


@pytest.fixture
async def own_kafka(tmp_path: Path) -> AsyncIterator[LocalKafka]:
    """A broker only this test uses, so it may stop and restart it (the shared one is never stopped)."""
    broker = LocalKafka(tmp_path / "kafka", heap="384m")
    try:
        await asyncio.to_thread(broker.start)
    except RuntimeError:
        # Its free ports were taken by another process before the JVM bound them: once more with new ones.
        await asyncio.to_thread(broker.stop)
        broker = LocalKafka(tmp_path / "kafka-again", heap="384m")
        await asyncio.to_thread(broker.start)
    try:
        await _wait_for_broker(broker.bootstrap)
        yield broker
    finally:
        await asyncio.to_thread(broker.stop)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root."""
    return Path(__file__).resolve().parent.parent
