"""The open conversation of a chat customer: one id per customer and shop until the conversation closes.

Closes come from the routing topic (ROUTING_EVENT_CLOSED records from the router), not from the widget: the
conversation is closed when an agent closes it with a wrap-up code. The next message after a close opens a new id.
"""

from __future__ import annotations

import uuid

from redis.asyncio import Redis

from switchboard.runtime.lua import LuaScript, ScriptCall
from switchboard.state.keys import Keys

OPEN_OR_GET = LuaScript.load(__file__, "open_or_get")
CLOSE_IF_CURRENT = LuaScript.load(__file__, "close_if_current")


class Conversations:
    """Conversation ids of chat customers, in Redis."""

    def __init__(self, redis: Redis, keys: Keys, ttl_s: int) -> None:
        self._redis = redis
        self._keys = keys
        self._ttl_s = ttl_s

    async def current(self, tenant_id: str, customer_id: str, known: str = "") -> str:
        """The customer's open conversation id, opening a new one when there is none. `known`: the id the caller
        saw last (a socket's), whose reverse key the same round trip refreshes when it is still the open one."""
        call, fresh = self.open_call(tenant_id, customer_id, known)
        return await self.opened(tenant_id, await call.script(self._redis, call.keys, call.args), fresh, known)

    def open_call(self, tenant_id: str, customer_id: str, known: str = "") -> tuple[ScriptCall, str]:
        """`current` as a script call to pipeline with others, and the fresh id it may open; `opened` reads its
        answer."""
        fresh = f"chat-{uuid.uuid4().hex}"
        keys = [
            self._keys.chat_conversation(tenant_id, customer_id),
            self._keys.chat_conversation_customer(tenant_id, fresh),
        ]
        if known:
            keys.append(self._keys.chat_conversation_customer(tenant_id, known))
        return ScriptCall(OPEN_OR_GET, keys, [fresh, customer_id, self._ttl_s, known]), fresh

    async def opened(self, tenant_id: str, answer: bytes | str, fresh: str, known: str = "") -> str:
        """The open id from an `open_call` answer."""
        current = answer.decode() if isinstance(answer, bytes) else str(answer)
        if current not in (fresh, known):
            # Keep the reverse key of the open id as long as the customer's (a TTL only: closes leave it to expire).
            await self._redis.expire(self._keys.chat_conversation_customer(tenant_id, current), self._ttl_s)
        return current

    async def customer_of(self, tenant_id: str, conversation_id: str) -> str | None:
        """The chat customer of a conversation, or None when it is not a (known) chat conversation."""
        value = await self._redis.get(self._keys.chat_conversation_customer(tenant_id, conversation_id))
        return value.decode() if isinstance(value, bytes) else value

    async def close(self, tenant_id: str, conversation_id: str) -> str | None:
        """End a conversation; returns its customer when it was their open one."""
        customer_id = await self.customer_of(tenant_id, conversation_id)
        if customer_id is None:
            return None
        closed = await CLOSE_IF_CURRENT(
            self._redis, keys=[self._keys.chat_conversation(tenant_id, customer_id)], args=[conversation_id]
        )
        return customer_id if int(closed) else None
