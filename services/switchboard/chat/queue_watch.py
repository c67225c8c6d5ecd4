"""Live queue positions for waiting customers, read from the router's own queue in Redis.

The router says a conversation's position once, in its QUEUED decision; as the conversations ahead are taken,
nobody tells the customer. So every `interval_s` each replica looks up, for the customers whose sockets it holds,
whether their open conversation is queued and where (the router's conversation hash `state`/`group` and its
per-channel queue, lowest score first), and pushes a `queue` frame when the position changed. Read-only: the
router stays the only writer of its keys.
"""

from __future__ import annotations

import asyncio
import contextlib

from redis.asyncio import Redis
from redis.exceptions import RedisError

from switchboard.chat.frames import queue_frame
from switchboard.chat.sockets import SocketHub
from switchboard.runtime.logs import get_logger
from switchboard.state.keys import Keys

log = get_logger(__name__)

# Key names of the router's hash and queue depend on values read here; they are built from templates the Python
# side splits out of keys.py (all under the tenant's hash tag, so in the same slot as KEYS[1]).
_POSITION = """
local conv = redis.call('GET', KEYS[1])
if not conv then return {'', 0} end
local f = redis.call('HMGET', ARGV[1] .. conv .. ARGV[2], 'state', 'group')
if f[1] ~= 'queued' or not f[2] then return {conv, 0} end
local rank = redis.call('ZRANK', ARGV[3] .. f[2] .. ARGV[4], conv)
if not rank then return {conv, 0} end
return {conv, rank + 1}
"""


class QueueWatch:
    """Pushes changed queue positions to this replica's waiting customers."""

    def __init__(
        self, hub: SocketHub, redis: Redis, keys: Keys, seconds_per_position: float, interval_s: float
    ) -> None:
        self._hub = hub
        self._keys = keys
        self._seconds_per_position = seconds_per_position
        self._interval_s = interval_s
        self._script = redis.register_script(_POSITION)
        self._shown: dict[tuple[str, str], tuple[str, int]] = {}
        self._stopping = asyncio.Event()

    def stop_intake(self) -> None:
        """Stop after the current round."""
        self._stopping.set()

    async def run(self) -> None:
        """Look up positions every interval until stopped."""
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval_s)
                return
            try:
                await self.refresh()
            except (RedisError, OSError) as exc:
                log.warning("chat_queue_watch_failed", error=repr(exc))

    async def refresh(self) -> None:
        """One round over the customers with a socket here."""
        customers = self._hub.customers()
        self._shown = {who: shown for who, shown in self._shown.items() if who in customers}
        for tenant_id, customer_id in customers:
            conversation_id, position = await self.position(tenant_id, customer_id)
            who = (tenant_id, customer_id)
            if position <= 0:
                self._shown.pop(who, None)
            elif self._shown.get(who) != (conversation_id, position):
                self._shown[who] = (conversation_id, position)
                frame = queue_frame(conversation_id, position, self._seconds_per_position)
                self._hub.push_local(tenant_id, customer_id, frame)

    async def position(self, tenant_id: str, customer_id: str) -> tuple[str, int]:
        """The customer's open conversation and its place in its chat queue (0 when not queued)."""
        conv_head, conv_tail = self._keys.conversation(tenant_id, "\x00").split("\x00")
        queue_head, queue_tail = self._keys.queue_channel(tenant_id, "\x00", "chat").split("\x00")
        conv, position = await self._script(
            keys=[self._keys.chat_conversation(tenant_id, customer_id)],
            args=[conv_head, conv_tail, queue_head, queue_tail],
        )
        return (conv.decode() if isinstance(conv, bytes) else str(conv)), int(position)
