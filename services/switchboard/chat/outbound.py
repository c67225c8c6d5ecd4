"""What the chat adapter consumes: agents' replies (outbound topic) and routing decisions (routing topic).

Replies go to the customer's open socket on any replica, else to the platform callback, else they are kept for
the customer's next connection (see replies.py); a reply the platform refused is dead-lettered with the reason.
QUEUED decisions become queue frames (position, estimated wait; see queue_watch.QueueFrames); CLOSED decisions
end the customer's open conversation so their next message opens a new one.
"""

from __future__ import annotations

from collections.abc import Sequence

from redis.asyncio import Redis

from switchboard.chat.callbacks import CallbackFailed
from switchboard.chat.conversations import Conversations
from switchboard.chat.frames import reply_frame
from switchboard.chat.queue_watch import QueueFrames
from switchboard.chat.replies import ReplyRoute
from switchboard.chat.sockets import SocketHub
from switchboard.contracts import Channel, MessageKind, OutboundMessage, RoutingEvent, RoutingEventType
from switchboard.runtime.consumer import Delivery, Rejected
from switchboard.runtime.logs import get_logger
from switchboard.runtime.redis_client import redis_unavailable_as_transient
from switchboard.state.keys import Keys

log = get_logger(__name__)

DELIVERED_TTL_S = 7 * 24 * 3600
_WAITING = (RoutingEventType.ROUTING_EVENT_QUEUED, RoutingEventType.ROUTING_EVENT_REQUEUED)


class ChatOutbound:
    """The handler of the chat adapter's consumer (outbound and routing topics)."""

    def __init__(
        self,
        *,
        redis: Redis,
        keys: Keys,
        conversations: Conversations,
        hub: SocketHub,
        route: ReplyRoute,
        queue_frames: QueueFrames,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._conversations = conversations
        self._hub = hub
        self._route = route
        self._queue_frames = queue_frames

    async def handle(self, batch: Sequence[Delivery]) -> Sequence[Rejected]:
        """Handle one partition's batch in order; Redis trouble is transient (the batch is retried)."""
        rejected: list[Rejected] = []
        with redis_unavailable_as_transient():
            for delivery in batch:
                message = delivery.message
                if isinstance(message, OutboundMessage) and message.kind == MessageKind.MESSAGE_KIND_TYPING:
                    await self._typing(message)
                elif isinstance(message, OutboundMessage) and message.channel == Channel.CHANNEL_CHAT:
                    reason = await self._reply(message)
                    if reason:
                        rejected.append(Rejected(delivery, reason, "undeliverable"))
                elif isinstance(message, RoutingEvent):
                    await self._routing(message)
        return rejected

    async def _typing(self, typing: OutboundMessage) -> None:
        """The agent is typing: shown on the customer's open socket if any, never stored or called back (a late
        indicator is worthless)."""
        customer_id = await self._conversations.customer_of(typing.tenant_id, typing.conversation_id)
        if customer_id:
            frame = {"type": "typing", "conversation_id": typing.conversation_id}
            await self._hub.publish(typing.tenant_id, customer_id, frame)

    async def _reply(self, reply: OutboundMessage) -> str:
        """Deliver a reply once; the reason when it could not be delivered."""
        # The conversation and the record know the customer by the same ref (runtime.pii.customer_ref).
        customer_id = await self._conversations.customer_of(reply.tenant_id, reply.conversation_id) or reply.customer_id
        if not customer_id:
            return f"conversation {reply.conversation_id} has no known chat customer"
        marker = self._keys.processed(reply.tenant_id, "chat-outbound", reply.message_id)
        if not await self._redis.set(marker, b"1", nx=True, ex=DELIVERED_TTL_S):
            return ""  # a redelivered record: the customer has it already
        frame = reply_frame(reply)
        try:
            await self._route.deliver(reply.tenant_id, customer_id, frame)
        except CallbackFailed as exc:
            return str(exc)
        except BaseException:
            await self._redis.delete(marker)  # not delivered: let the retry deliver it
            raise
        return ""

    async def _routing(self, event: RoutingEvent) -> None:
        if event.channel not in (Channel.CHANNEL_CHAT, Channel.CHANNEL_UNSPECIFIED):
            return
        if event.type in _WAITING and event.queue_position > 0:
            customer_id = await self._conversations.customer_of(event.tenant_id, event.conversation_id)
            if customer_id:
                frame = await self._queue_frames.decided(
                    event.tenant_id, event.conversation_id, event.skill_group, int(event.queue_position)
                )
                if frame is not None:
                    await self._hub.publish(event.tenant_id, customer_id, frame)
        elif event.type == RoutingEventType.ROUTING_EVENT_CLOSED:
            customer_id = await self._conversations.close(event.tenant_id, event.conversation_id)
            if customer_id:
                log.info("chat_conversation_closed", tenant_id=event.tenant_id, conversation_id=event.conversation_id)
                await self._hub.publish(
                    event.tenant_id, customer_id, {"type": "closed", "conversation_id": event.conversation_id}
                )
