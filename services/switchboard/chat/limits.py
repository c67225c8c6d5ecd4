"""Rate limits: a token bucket per connection (in memory, runtime/buckets.py) and a window counter per customer
(in Redis).

The connection bucket refuses a flood before it costs a Redis or Kafka round trip; the customer counter holds
across a customer's tabs and across chat replicas. Neither blocks: a refused message is answered at once, so a
flooding customer only ever waits on their own socket and never on anyone else's.
"""

from __future__ import annotations

import time

from redis.asyncio import Redis

from switchboard.runtime.lua import LuaScript
from switchboard.state.keys import Keys

COUNT_IN_WINDOW = LuaScript.load(__file__, "count_in_window")


class CustomerRate:
    """At most `limit` messages per customer per `window_s` seconds, over every connection and replica."""

    def __init__(self, redis: Redis, keys: Keys, limit: int, window_s: int) -> None:
        self._redis = redis
        self._keys = keys
        self._limit = limit
        self._window_s = window_s

    async def allow(self, tenant_id: str, customer_id: str, now: float | None = None) -> bool:
        """Count one message; False when the customer is over the limit in this window."""
        window = int((now if now is not None else time.time()) // self._window_s)
        key = self._keys.chat_customer_rate(tenant_id, customer_id, window)
        count = int(await COUNT_IN_WINDOW(self._redis, keys=[key], args=[self._window_s * 2]))
        return count <= self._limit
