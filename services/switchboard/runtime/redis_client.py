"""The Redis client factory: one Redis server by default, Redis Cluster when the settings say so.

`REDIS_URL=redis+cluster://host:port` (or `rediss+cluster://`), or `SB_REDIS_CLUSTER=true` with a plain URL,
gives every service a `redis.asyncio.cluster.RedisCluster` that discovers the other nodes from that one.

Credentials and TLS (docs/security.md): an ACL user by SB_REDIS_USERNAME / SB_REDIS_PASSWORD (or in the URL), TLS by
a `rediss://` URL with the CA (and optional client certificate and key) files of SB_REDIS_SSL_*; the same options
reach every node of a cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any, cast

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterPubSub, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from switchboard.runtime.errors import TransientError
from switchboard.runtime.settings import ServiceSettings

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
# How long a cluster pubsub waits on each node's connection in turn for a shard message.
CLUSTER_SHARD_POLL_S = 0.02


def cluster_url(url: str) -> str | None:
    """The plain URL of a `redis+cluster://` (or `rediss+cluster://`) URL; None for any other URL."""
    scheme, sep, rest = url.partition("://")
    plain = CLUSTER_SCHEMES.get(scheme.lower())
    return f"{plain}{sep}{rest}" if plain and sep else None


def is_cluster(settings: ServiceSettings) -> bool:
    """True when the service talks to a Redis Cluster (by URL scheme or `SB_REDIS_CLUSTER`)."""
    return settings.redis_cluster or cluster_url(settings.redis_url) is not None


def connect_url(url: str, *, cluster: bool = False, **options: Any) -> Redis:
    """A client for `url` (a RedisCluster for a `+cluster` URL or with `cluster`), byte responses.

    Typed as `Redis`: redis-py types RedisCluster apart although it answers the same commands, and services are
    written against those shared commands only (scripts with declared KEYS, single-slot or non-transactional
    pipelines, see docs/state.md). The cluster test suite is what holds them to it.
    """
    plain = cluster_url(url)
    if plain is not None or cluster:
        return cast(Redis, RedisCluster.from_url(plain or url, **options))
    return Redis.from_url(url, **options)


def redis_security_options(settings: ServiceSettings) -> dict[str, Any]:
    """The ACL user, password and TLS files of the settings as redis-py connection options (only those set).

    TLS itself is chosen by the URL (`rediss://`, which the settings check when TLS files are given); the
    certificate must name the host the URL names (redis-py checks the hostname).
    """
    options: dict[str, Any] = {}
    if settings.redis_username:
        options["username"] = settings.redis_username
    if settings.redis_password is not None:
        options["password"] = settings.redis_password.get_secret_value()
    if settings.redis_ssl_ca_file is not None:
        options["ssl_ca_certs"] = str(settings.redis_ssl_ca_file)
    if settings.redis_ssl_cert_file is not None and settings.redis_ssl_key_file is not None:
        options["ssl_certfile"] = str(settings.redis_ssl_cert_file)
        options["ssl_keyfile"] = str(settings.redis_ssl_key_file)
    return options


def redis_client(settings: ServiceSettings, *, max_connections: int | None = None) -> Redis:
    """A client for the service's Redis; byte responses, short timeouts, a few quick reconnect retries.

    Longer outages surface as redis ConnectionError, which callers turn into TransientError so the consumer
    loop pauses instead of guessing. Callers beyond `max_connections` (default `SB_REDIS_MAX_CONNECTIONS`)
    concurrent commands wait for a free connection (up to `SB_REDIS_POOL_WAIT_S`) instead of failing with "Too
    many connections". On a cluster only an explicit `max_connections` caps (per node), and RedisCluster fails a
    command beyond it instead of waiting, so a cluster client is left uncapped by default.
    """
    options: dict[str, Any] = {
        "socket_timeout": 2.0,
        "socket_connect_timeout": 2.0,
        "health_check_interval": 15,
        "retry": Retry(ExponentialBackoff(cap=0.5, base=0.02), retries=3),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
        **redis_security_options(settings),
    }
    if is_cluster(settings):
        if max_connections is not None:
            options["max_connections"] = max_connections
        return connect_url(settings.redis_url, cluster=True, **options)
    pool = BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=max_connections or settings.redis_max_connections,
        timeout=settings.redis_pool_wait_s,
        **options,
    )
    # from_pool: the client owns the pool, so aclose() closes its connections too (with Redis(connection_pool=...)
    # they would be left open).
    return Redis.from_pool(pool)


def redis_for(url: str) -> Redis:
    """A client for another Redis URL with this process's credentials and TLS files (SB_REDIS_*): the tools'
    clients of the Redis a stack runs on, and the router replay's scratch Redis."""
    return connect_url(url, **redis_security_options(ServiceSettings(redis_url=url)))


async def prepare_pubsub(redis: Redis) -> None:
    """Call before a client's first SUBSCRIBE/PSUBSCRIBE: a RedisCluster picks its pub/sub node from the slot table
    it fills on its first command (without it, `pubsub().subscribe` fails with a KeyError). No-op on one server.

    On a cluster, a classic PUBLISH is broadcast over the cluster bus, so one subscribed connection on any node hears
    every channel (the gateway's desk-notify pattern); shard channels (SSUBSCRIBE) are read from the node owning
    each one (see docs/state.md, Redis Cluster).
    """
    if isinstance(redis, RedisCluster):
        await redis.initialize()


async def next_shard_message(pubsub: PubSub, timeout: float) -> dict[str, Any] | None:
    """The next message (or None after about `timeout`) of a pub/sub that holds shard channels (SSUBSCRIBE).

    A cluster's pubsub holds one connection per node and reads them in turn, each with its own timeout, so it gets
    a short one: a message on one node must not wait for reads of the others (at most `CLUSTER_SHARD_POLL_S` per
    other node).
    """
    if isinstance(pubsub, ClusterPubSub):
        if not pubsub.node_pubsub_mapping:
            # No node holds a shard channel of it any more (the last one was unsubscribed): redis-py answers None
            # at once, without reading anything, and a loop around this call would hold the event loop for good.
            await asyncio.sleep(timeout)
            return None
        return await pubsub.get_sharded_message(ignore_subscribe_messages=True, timeout=CLUSTER_SHARD_POLL_S)
    message: dict[str, Any] | None = await pubsub.get_message(ignore_subscribe_messages=True, timeout=timeout)
    return message


@contextlib.contextmanager
def redis_unavailable_as_transient() -> Iterator[None]:
    """Redis trouble inside the block becomes TransientError: a consumer pauses and retries the batch, an adapter
    tells its sender to retry later. Errors of the block's own making (TransientError included) pass through."""
    try:
        yield
    except (RedisError, RedisClusterException, OSError) as exc:
        # RedisClusterException (no node of a cluster answers) is outside redis-py's RedisError tree.
        raise TransientError(f"redis unavailable: {describe_redis_error(exc)}") from exc


def describe_redis_error(exc: BaseException) -> str:
    """The error's type and message: redis-py's repr of some (AuthenticationError) hides the message, which is
    what tells an operator that the credentials were refused ("invalid username-password pair ...")."""
    return f"{type(exc).__name__}: {exc}"
