"""Rate limits: a token bucket per connection (in memory, runtime/buckets.py) and a window counter per customer
(in Redis).

The connection bucket refuses a flood before it costs a Redis or Kafka round trip; the customer counter holds
across a customer's tabs and across chat replicas. Neither blocks: a refused message is answered at once, so a
flooding customer only ever waits on their own socket and never on anyone else's.
"""

from __future__ import annotations

import time

from redis.asyncio import Redis

from switchboard.runtime.lua import LuaScript, ScriptCall
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
        call = self.count_call(tenant_id, customer_id, now)
        return self.within(await call.script(self._redis, call.keys, call.args))

    def count_call(self, tenant_id: str, customer_id: str, now: float | None = None) -> ScriptCall:
        """`allow` as a script call to pipeline with others; `within` reads its answer."""
        window = int((now if now is not None else time.time()) // self._window_s)
        key = self._keys.chat_customer_rate(tenant_id, customer_id, window)
        return ScriptCall(COUNT_IN_WINDOW, [key], [self._window_s * 2])

    def within(self, count: int | bytes) -> bool:
        """Whether a `count_call` answer is within the limit."""
        return int(count) <= self._limit
