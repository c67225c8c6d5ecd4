"""Chat customers who are gone: no widget socket open on any chat replica, and no platform callback to reach them.

The chat adapter keeps the connection ids of each customer's open sockets (`keys.chat_customer_sockets`) and, when
the last one closes, marks the customer's open conversation gone since then (`keys.chat_gone`, a sorted set of
conversation → ms); a socket opening clears the mark. The router's sweep abandons a conversation still queued or
offered whose mark is older than the tenant's `abandonment.chat_patience_s` (router/abandon.py) and takes the mark.

A tenant whose platform takes replies by callback can reach its customers without a socket: the chat adapter does
not mark them. A chat replica that dies leaves its sockets in the set until it expires (`SOCKETS_TTL_S`); their
customers are not marked gone meanwhile (they wait, as they would without this).
"""

from __future__ import annotations

from redis.asyncio import Redis

from switchboard.runtime.lua import LuaScript
from switchboard.state.keys import Keys

SOCKET_OPENED = LuaScript.load(__file__, "chat_socket_opened")
SOCKET_CLOSED = LuaScript.load(__file__, "chat_socket_closed")
# The set of a customer's sockets lives this long after the last socket opened.
SOCKETS_TTL_S = 24 * 3600
# A gone mark older than this is dropped whatever the shop's patience (none set: nobody reads the marks).
FORGET_AFTER_MS = 24 * 3600 * 1000


class Departures:
    """Where the chat adapter records customers' sockets opening and closing."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys

    def _keys_of(self, tenant_id: str, customer_id: str) -> list[str]:
        k = self._keys
        return [
            k.chat_customer_sockets(tenant_id, customer_id),
            k.chat_conversation(tenant_id, customer_id),
            k.chat_gone(tenant_id),
        ]

    async def socket_opened(self, tenant_id: str, customer_id: str, connection_id: str) -> None:
        """The customer can be reached again: their open conversation is not gone."""
        await SOCKET_OPENED(self._redis, self._keys_of(tenant_id, customer_id), [connection_id, SOCKETS_TTL_S])

    async def socket_closed(self, tenant_id: str, customer_id: str, connection_id: str, now_ms: int) -> bool:
        """A socket closed; True when it was the customer's last and their open conversation is now marked gone."""
        marked = await SOCKET_CLOSED(self._redis, self._keys_of(tenant_id, customer_id), [connection_id, now_ms])
        return bool(int(marked))


async def gone_since(redis: Redis, keys: Keys, tenant_id: str, conversation_id: str) -> int | None:
    """Since when (ms) a chat conversation's customer has had no socket open, or None when they have one."""
    score = await redis.zscore(keys.chat_gone(tenant_id), conversation_id)
    return None if score is None else int(score)


async def gone_before(redis: Redis, keys: Keys, tenant_id: str, before_ms: int, limit: int) -> list[str]:
    """Chat conversations whose customer has been gone since `before_ms` or earlier (longest gone first)."""
    found = await redis.zrangebyscore(keys.chat_gone(tenant_id), "-inf", before_ms, start=0, num=limit)
    return [m.decode() if isinstance(m, bytes) else str(m) for m in found]


async def forget_gone(redis: Redis, keys: Keys, tenant_id: str, now_ms: int) -> int:
    """Drop marks older than FORGET_AFTER_MS (a shop without a patience window never abandons, so never takes them)."""
    return int(await redis.zremrangebyscore(keys.chat_gone(tenant_id), "-inf", now_ms - FORGET_AFTER_MS))
