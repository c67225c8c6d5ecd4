"""Where an agent's reply goes: the customer's socket on any replica, else the platform callback, else it is kept
for the customer's next connection."""

from __future__ import annotations

from typing import Any

from switchboard.chat.callbacks import PlatformCallbacks
from switchboard.chat.metrics import CHAT_REPLIES
from switchboard.chat.pending import PendingReplies
from switchboard.chat.sockets import PENDING_NUDGE, SocketHub


class ReplyRoute:
    """Delivers reply frames; raises CallbackFailed when the platform refused one (it goes to the DLQ)."""

    def __init__(self, callbacks: PlatformCallbacks, pending: PendingReplies) -> None:
        self._callbacks = callbacks
        self._pending = pending
        self.hub: SocketHub | None = None  # set once the hub exists (the hub calls `without_socket` back)

    async def deliver(self, tenant_id: str, customer_id: str, frame: dict[str, Any]) -> None:
        """To an open socket when there is one anywhere, else `without_socket`."""
        assert self.hub is not None
        if await self.hub.publish(tenant_id, customer_id, frame) > 0:
            CHAT_REPLIES.labels("socket").inc()
            return
        await self.without_socket(tenant_id, customer_id, frame)

    async def without_socket(self, tenant_id: str, customer_id: str, frame: dict[str, Any]) -> None:
        """The platform callback when the shop has one; else kept for the next connection."""
        if self._callbacks.configured(tenant_id):
            try:
                await self._callbacks.post(tenant_id, customer_id, frame)
            except Exception:
                CHAT_REPLIES.labels("failed").inc()
                raise
            CHAT_REPLIES.labels("callback").inc()
            return
        await self._pending.store(tenant_id, customer_id, frame)
        CHAT_REPLIES.labels("kept").inc()
        if self.hub is not None:
            # A socket may have opened between the PUBLISH that found none and the store: tell it.
            await self.hub.publish(tenant_id, customer_id, {"type": PENDING_NUDGE})
