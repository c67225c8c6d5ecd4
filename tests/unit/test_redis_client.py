"""Which Redis client a service gets: one server by default, Redis Cluster by URL scheme or setting."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from switchboard.runtime.redis_client import cluster_url, connect_url, is_cluster
from switchboard.runtime.settings import ServiceSettings


@pytest.mark.parametrize(
    ("url", "plain"),
    [
        ("redis+cluster://10.0.0.5:7000", "redis://10.0.0.5:7000"),
        ("rediss+cluster://user:pw@redis.internal:6380/0", "rediss://user:pw@redis.internal:6380/0"),
        ("REDIS+CLUSTER://h:1", "redis://h:1"),
        ("redis://127.0.0.1:6379/0", None),
        ("unix:///run/redis.sock", None),
        ("redis+cluster:h:1", None),
    ],
)
def test_cluster_urls_are_recognised_by_their_scheme(url: str, plain: str | None) -> None:
    assert cluster_url(url) == plain


def test_single_redis_is_the_default_and_either_setting_selects_the_cluster() -> None:
    assert not is_cluster(ServiceSettings(redis_url="redis://127.0.0.1:6379/0"))
    assert is_cluster(ServiceSettings(redis_url="redis+cluster://127.0.0.1:7000"))
    assert is_cluster(ServiceSettings(redis_url="redis://127.0.0.1:7000", redis_cluster=True))


def test_the_environment_selects_cluster_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:7000")
    monkeypatch.setenv("SB_REDIS_CLUSTER", "true")
    assert is_cluster(ServiceSettings())


async def test_connect_url_builds_the_client_the_url_names() -> None:
    cluster = connect_url("redis+cluster://127.0.0.1:7000")
    single = connect_url("redis://127.0.0.1:6379/0")
    try:
        assert isinstance(cluster, RedisCluster)
        assert isinstance(single, Redis) and not isinstance(single, RedisCluster)
    finally:
        await cluster.aclose()
        await single.aclose()
