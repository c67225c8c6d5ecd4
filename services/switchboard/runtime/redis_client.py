"""The Redis client factory."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from switchboard.runtime.errors import TransientError
from switchboard.runtime.settings import ServiceSettings


def redis_client(settings: ServiceSettings, *, max_connections: int | None = None) -> Redis:
    """A client for the service's Redis; byte responses, short timeouts, a few quick reconnect retries.

    Longer outages surface as redis ConnectionError, which callers turn into TransientError so the consumer
    loop pauses instead of guessing. With `max_connections`, callers beyond that many concurrent commands wait
    for a free connection (up to 10 s) instead of failing with "Too many connections" (the default pool's 100).
    """
    options: dict[str, Any] = {
        "socket_timeout": 2.0,
        "socket_connect_timeout": 2.0,
        "health_check_interval": 15,
        "retry": Retry(ExponentialBackoff(cap=0.5, base=0.02), retries=3),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
    }
    if max_connections is None:
        return Redis.from_url(settings.redis_url, **options)
    pool = BlockingConnectionPool.from_url(settings.redis_url, max_connections=max_connections, timeout=10, **options)
    return Redis(connection_pool=pool)


@contextlib.contextmanager
def redis_unavailable_as_transient() -> Iterator[None]:
    """Redis trouble inside the block becomes TransientError: a consumer pauses and retries the batch, an adapter
    tells its sender to retry later. Errors of the block's own making (TransientError included) pass through."""
    try:
        yield
    except (RedisError, OSError) as exc:
        raise TransientError(f"redis unavailable: {exc!r}") from exc
