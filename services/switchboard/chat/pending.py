"""Replies kept for a customer who had no socket open and whose shop has no platform callback.

They wait in a capped Redis list (with a TTL) and are sent right after the `hello` of the customer's next socket,
so a page reload or a phone that lost signal does not lose an agent's answer.
"""

from __future__ import annotations

import json
from typing import Any

from redis.asyncio import Redis

from switchboard.runtime.lua import LuaScript
from switchboard.state.keys import Keys

TAKE_PENDING = LuaScript.load(__file__, "take_pending")


class PendingReplies:
    """Per-customer reply lists in Redis."""

    def __init__(self, redis: Redis, keys: Keys, ttl_s: int, max_frames: int = 100) -> None:
        self._redis = redis
        self._keys = keys
        self._ttl_s = ttl_s
        self._max = max_frames

    async def store(self, tenant_id: str, customer_id: str, frame: dict[str, Any]) -> None:
        """Keep a reply (the oldest are dropped beyond the cap)."""
        key = self._keys.chat_pending_replies(tenant_id, customer_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.rpush(key, json.dumps(frame, ensure_ascii=False))
            pipe.ltrim(key, -self._max, -1)
            pipe.expire(key, self._ttl_s)
            await pipe.execute()

    async def take(self, tenant_id: str, customer_id: str) -> list[dict[str, Any]]:
        """Every waiting reply, oldest first; they are no longer kept."""
        frames = await TAKE_PENDING(self._redis, keys=[self._keys.chat_pending_replies(tenant_id, customer_id)])
        return [json.loads(f) for f in frames]
