"""Widget sockets on this replica, reachable from every replica through Redis sharded pub/sub.

Each replica subscribes (SSUBSCRIBE) to `keys.chat_customer_channel(tenant, customer)` while it holds at least one
socket of that customer; whoever has a frame for the customer SPUBLISHes it there. SPUBLISH answers how many
replicas got it, so 0 means no socket is open anywhere and a reply takes another way (replies.py). Sharded, because
on a Redis Cluster a classic PUBLISH counts only the subscribers of the node it reached (0 while the customer's
replica listens on another node), while a shard channel lives on the node owning its slot with all its
subscribers (the channel carries the tenant's hash tag, so that is the tenant's node).

Each socket has its own bounded outbox drained by its own writer task: a customer who stops reading fills only
their own outbox (and is disconnected), never the listener that serves everyone else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError
from starlette.websockets import WebSocket

from switchboard.chat.pending import PendingReplies
from switchboard.runtime.logs import get_logger
from switchboard.runtime.redis_client import next_shard_message, prepare_pubsub
from switchboard.state.keys import Keys

log = get_logger(__name__)

OUTBOX_FRAMES = 256
# Published after a reply was kept for later: a socket that opened meanwhile picks it up at once.
PENDING_NUDGE = "pending"
CLOSE_TOO_SLOW = 1013  # "try again later": the client did not read its frames

Frame = dict[str, Any]
Undelivered = Callable[[str, str, Frame], Awaitable[None]]


class CustomerSocket:
    """One open widget socket and its outbox."""

    def __init__(self, ws: WebSocket, tenant_id: str, customer_id: str, connection_id: str) -> None:
        self.ws = ws
        self.tenant_id = tenant_id
        self.customer_id = customer_id
        self.connection_id = connection_id
        self._outbox: asyncio.Queue[Frame | None] = asyncio.Queue(OUTBOX_FRAMES)
        self._writer: asyncio.Task[None] | None = None
        self._closing: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the writer task."""
        self._writer = asyncio.create_task(self._write(), name=f"chat-ws-{self.connection_id}")

    def push(self, frame: Frame) -> bool:
        """Queue a frame; False (and the socket is being closed) when the client stopped reading."""
        try:
            self._outbox.put_nowait(frame)
            return True
        except asyncio.QueueFull:
            if self._closing is None:
                log.warning("chat_socket_too_slow", tenant_id=self.tenant_id, connection_id=self.connection_id)
                self._closing = asyncio.create_task(self._close_slow())
            return False

    async def _close_slow(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close(CLOSE_TOO_SLOW, "not reading frames")

    async def _write(self) -> None:
        while (frame := await self._outbox.get()) is not None:
            try:
                await self.ws.send_text(json.dumps(frame, ensure_ascii=False))
            except Exception:  # the socket went away; the reader notices and unregisters
                return

    async def drain_and_stop(self) -> None:
        """Send what is queued, then stop the writer."""
        with contextlib.suppress(asyncio.QueueFull):
            self._outbox.put_nowait(None)
        if self._writer is not None:
            try:
                await asyncio.wait_for(self._writer, 2.0)
            except (TimeoutError, asyncio.CancelledError):
                self._writer.cancel()


class SocketHub:
    """The sockets of this replica and the pub/sub subscription that reaches them."""

    def __init__(self, redis: Redis, keys: Keys, pending: PendingReplies, on_undelivered: Undelivered) -> None:
        self._redis = redis
        self._keys = keys
        self._pending = pending
        self._on_undelivered = on_undelivered
        self._sockets: dict[str, set[CustomerSocket]] = {}
        self._pubsub: PubSub = redis.pubsub()
        self._subscribed = asyncio.Event()
        self._stopping = asyncio.Event()

    @property
    def open_sockets(self) -> int:
        """How many widget sockets this replica holds."""
        return sum(len(s) for s in self._sockets.values())

    def customers(self) -> set[tuple[str, str]]:
        """(tenant, customer) of every socket held here."""
        return {(sock.tenant_id, sock.customer_id) for held in self._sockets.values() for sock in held}

    def push_local(self, tenant_id: str, customer_id: str, frame: Frame) -> None:
        """A frame to this customer's sockets on this replica only."""
        for sock in self._sockets.get(self._keys.chat_customer_channel(tenant_id, customer_id), ()):
            sock.push(frame)

    def held(self, tenant_id: str, customer_id: str) -> int:
        """How many sockets of this customer this replica holds."""
        return len(self._sockets.get(self._keys.chat_customer_channel(tenant_id, customer_id), ()))

    async def add(self, sock: CustomerSocket) -> None:
        """Register a socket (subscribing to its customer's channel if it is the first here)."""
        channel = self._keys.chat_customer_channel(sock.tenant_id, sock.customer_id)
        first = channel not in self._sockets
        self._sockets.setdefault(channel, set()).add(sock)
        if first:
            await prepare_pubsub(self._redis)
            await self._pubsub.ssubscribe(channel)
            self._subscribed.set()

    async def remove(self, sock: CustomerSocket) -> None:
        """Unregister a socket (unsubscribing when it was the customer's last here)."""
        channel = self._keys.chat_customer_channel(sock.tenant_id, sock.customer_id)
        held = self._sockets.get(channel)
        if held is None:
            return
        held.discard(sock)
        if not held:
            del self._sockets[channel]
            with contextlib.suppress(RedisError):
                await self._pubsub.sunsubscribe(channel)

    async def deliver_pending(self, tenant_id: str, customer_id: str) -> None:
        """Send the replies kept for the customer to their sockets here (none taken when there are none here)."""
        held = self._sockets.get(self._keys.chat_customer_channel(tenant_id, customer_id))
        if not held:
            return
        try:
            frames = await self._pending.take(tenant_id, customer_id)
        except (RedisError, OSError) as exc:
            log.warning("chat_pending_take_failed", tenant_id=tenant_id, error=repr(exc))
            return  # they stay in Redis for the next connection
        for frame in frames:
            for sock in held:
                sock.push(frame)

    async def publish(self, tenant_id: str, customer_id: str, frame: Frame) -> int:
        """Send a frame to the customer's sockets on any replica; the number of replicas that hold one."""
        channel = self._keys.chat_customer_channel(tenant_id, customer_id)
        payload = json.dumps({"t": tenant_id, "c": customer_id, "f": frame}, ensure_ascii=False)
        return int(await self._redis.spublish(channel, payload))

    def stop_intake(self) -> None:
        """Stop listening (shutdown)."""
        self._stopping.set()
        self._subscribed.set()

    async def close(self) -> None:
        """Close the pub/sub connection."""
        await self._pubsub.aclose()  # type: ignore[no-untyped-call]

    async def listen(self) -> None:
        """Deliver published frames to local sockets until stopped."""
        while not self._stopping.is_set():
            if not self._pubsub.subscribed:
                self._subscribed.clear()
                await self._subscribed.wait()
                continue
            try:
                message = await next_shard_message(self._pubsub, timeout=0.5)
            except (RedisError, OSError) as exc:
                log.warning("chat_pubsub_failed", error=repr(exc))
                await self._resubscribe()
                continue
            if message is not None and message.get("type") == "smessage":
                try:
                    await self._deliver(message["channel"], message["data"])
                except Exception as exc:  # one bad frame or a Redis hiccup must not stop delivery to everyone
                    log.warning("chat_frame_delivery_failed", error=repr(exc))

    async def _resubscribe(self) -> None:
        """A new pub/sub connection with every channel of this replica's sockets, retried until Redis answers."""
        while not self._stopping.is_set():
            await asyncio.sleep(0.5)
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.aclose()  # type: ignore[no-untyped-call]
            self._pubsub = self._redis.pubsub()
            if not self._sockets:
                return
            try:
                await prepare_pubsub(self._redis)
                await self._pubsub.ssubscribe(*self._sockets)
                log.info("chat_pubsub_resubscribed", channels=len(self._sockets))
            except (RedisError, OSError) as exc:
                log.warning("chat_pubsub_resubscribe_failed", error=repr(exc))
                continue
            # Replies that found no subscriber while the subscription was down were kept: send them now.
            for held in list(self._sockets.values()):
                if held:
                    sock = next(iter(held))
                    await self.deliver_pending(sock.tenant_id, sock.customer_id)
            return

    async def _deliver(self, channel: bytes | str, data: bytes | str) -> None:
        name = channel.decode() if isinstance(channel, bytes) else channel
        envelope = json.loads(data)
        frame: Frame = envelope["f"]
        if frame.get("type") == PENDING_NUDGE:
            await self.deliver_pending(envelope["t"], envelope["c"])
            return
        held = self._sockets.get(name, set())
        delivered = [sock.push(frame) for sock in held]
        if not any(delivered):
            # The socket closed between PUBLISH and now: the reply still has to reach the customer.
            await self._on_undelivered(envelope["t"], envelope["c"], frame)
