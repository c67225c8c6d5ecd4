"""The open conversation of a chat customer: one id per customer and shop until the conversation closes.

Closes come from the routing topic (ROUTING_EVENT_CLOSED records from the router), not from the widget: the
conversation is closed when an agent closes it with a wrap-up code. The next message after a close opens a new id.
"""

from __future__ import annotations

import uuid

from redis.asyncio import Redis

from switchboard.state.keys import Keys

# Take the open id, or open one: two messages racing on two replicas still get one id (SET NX wins once).
_OPEN_OR_GET = """
local current = redis.call('GET', KEYS[1])
if current then
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  redis.call('EXPIRE', ARGV[4] .. current .. ARGV[5], ARGV[3])
  return current
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
return ARGV[1]
"""

# Close only the id that is still open: a late close of an older conversation must not end the new one.
_CLOSE_IF_CURRENT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""


class Conversations:
    """Conversation ids of chat customers, in Redis."""

    def __init__(self, redis: Redis, keys: Keys, ttl_s: int) -> None:
        self._redis = redis
        self._keys = keys
        self._ttl_s = ttl_s
        self._open = redis.register_script(_OPEN_OR_GET)
        self._close = redis.register_script(_CLOSE_IF_CURRENT)

    async def current(self, tenant_id: str, customer_id: str) -> str:
        """The customer's open conversation id, opening a new one when there is none."""
        fresh = f"chat-{uuid.uuid4().hex}"
        keys = [
            self._keys.chat_conversation(tenant_id, customer_id),
            self._keys.chat_conversation_customer(tenant_id, fresh),
        ]
        # The reverse key of an id already open is named by that id, which only the script reads: it gets the
        # key's template (same tenant hash tag, so the same slot), as the router's scripts do.
        head, tail = self._keys.chat_conversation_customer(tenant_id, "\x00").split("\x00")
        value = await self._open(keys=keys, args=[fresh, customer_id, self._ttl_s, head, tail])
        return value.decode() if isinstance(value, bytes) else str(value)

    async def customer_of(self, tenant_id: str, conversation_id: str) -> str | None:
        """The chat customer of a conversation, or None when it is not a (known) chat conversation."""
        value = await self._redis.get(self._keys.chat_conversation_customer(tenant_id, conversation_id))
        return value.decode() if isinstance(value, bytes) else value

    async def close(self, tenant_id: str, conversation_id: str) -> str | None:
        """End a conversation; returns its customer when it was their open one."""
        customer_id = await self.customer_of(tenant_id, conversation_id)
        if customer_id is None:
            return None
        closed = await self._close(keys=[self._keys.chat_conversation(tenant_id, customer_id)], args=[conversation_id])
        return customer_id if int(closed) else None
