"""The Redis client factory."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from switchboard.runtime.settings import ServiceSettings


def redis_client(settings: ServiceSettings) -> Redis:
    """A client for the service's Redis; byte responses, short timeouts, a few quick reconnect retries.

    Longer outages surface as redis ConnectionError, which callers turn into TransientError so the consumer
    loop pauses instead of guessing.
    """
    return Redis.from_url(
        settings.redis_url,
        socket_timeout=2.0,
        socket_connect_timeout=2.0,
        health_check_interval=15,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.02), retries=3),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )
