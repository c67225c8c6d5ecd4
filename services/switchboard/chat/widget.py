"""The customer websocket of the chat widget: `/chat/v1/ws?tenant=<shop>&customer=<id>&token=<hmac>`
(`&expires=<unix s>` and `&claims=<signed facts>` optional, docs/chat-widget.md).

Per socket, a reader reads frames ahead while a worker handles the ones read before, in order: the messages read
together are admitted in one Redis round trip and sent in one broker round trip, and every answer (ack, error) goes
out in the order of the frames. So one socket's acks are pipelined, and a conversation's messages reach the topic in
the order they were sent. Protocol: docs/chat-widget.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

from redis.exceptions import RedisError
from starlette.websockets import WebSocket, WebSocketDisconnect

from switchboard.chat.accepting import ChatAccept, ChatAccepted
from switchboard.chat.facts import TrustedFacts, decode_claims
from switchboard.chat.frames import ChatInput, Limits, decode_json, error_frame, parse_message
from switchboard.chat.limits import CustomerRate
from switchboard.chat.metrics import CHAT_MESSAGES, CHAT_SOCKETS
from switchboard.chat.settings import ChatSettings, Tenant
from switchboard.chat.signing import verify_widget_token
from switchboard.chat.sockets import CustomerSocket, SocketHub
from switchboard.intake.accept import RETRY_LATER_REASON
from switchboard.intake.ids import stable_id
from switchboard.intake.tally import InboundOutcome
from switchboard.runtime.buckets import TokenBucket
from switchboard.runtime.errors import InvalidRecord, TransientError
from switchboard.runtime.input_limits import TOO_LARGE, InputRefused, close_reason
from switchboard.runtime.logs import get_logger
from switchboard.runtime.pii import CustomerRef, customer_ref
from switchboard.state.departures import Departures

log = get_logger(__name__)

PATH = "/chat/v1/ws"
SOURCE = "ws:" + PATH
CLOSE_POLICY = 1008  # rate limit kept being exceeded or frames kept being refused, or too many sockets
CLOSE_TRY_LATER = 1013
# The replica holds SB_CHAT_MAX_SOCKETS sockets already: the same code, its own reason (docs/chat-widget.md).
CLOSE_SOCKET_LIMIT = 1013
SOCKET_LIMIT_REASON = "server at its socket limit, retry later"
CLOSE_UNAUTHORIZED = 4401
CLOSE_UNKNOWN_TENANT = 4404
CLOSE_BAD_REQUEST = 4400
# Frames a socket's reader takes ahead of the one being handled (a widget sending faster waits in TCP).
READ_AHEAD_FRAMES = 32


@dataclass(eq=False)
class _Message:
    """A message frame that passed the frame checks, waiting for its batch: its bytes (for a DLQ record), its
    client id, its provider id, and the message or why it is invalid."""

    raw: bytes
    client_msg_id: str
    provider_id: str
    parsed: ChatInput | InvalidRecord


class WidgetEndpoint:
    """Serves widget sockets: authenticate, then take messages and push replies and queue positions."""

    def __init__(
        self,
        settings: ChatSettings,
        tenants: dict[str, Tenant],
        accept: ChatAccept,
        hub: SocketHub,
        rate: CustomerRate,
        departures: Departures | None = None,
    ) -> None:
        self.settings = settings
        self.departures = departures
        self.tenants = tenants
        self.accept = accept
        self.hub = hub
        self.rate = rate
        self.limits = Limits(settings.chat_max_text_chars, settings.chat_max_url_chars)
        self.open_sockets = 0

    async def serve(self, ws: WebSocket) -> None:
        """One customer's socket, from handshake to close; refused (1013) beyond the replica's socket limit."""
        await ws.accept()
        if self.open_sockets >= self.settings.chat_max_sockets:
            await ws.close(CLOSE_SOCKET_LIMIT, SOCKET_LIMIT_REASON)
            return
        self.open_sockets += 1
        try:
            await self._serve(ws)
        finally:
            self.open_sockets -= 1

    async def _serve(self, ws: WebSocket) -> None:
        who = await self._authenticate(ws)
        if who is None:
            return
        tenant_id, raw_customer_id, facts = who
        # From here on the customer is their ref: a phone number or e-mail as id reaches no key, value or record.
        # Keyed with the shop's secret, so the ref cannot be reversed by trying every mobile number.
        customer = customer_ref(tenant_id, raw_customer_id, self.tenants[tenant_id].secret)
        customer_id = customer.ref
        if self.hub.held(tenant_id, customer_id) >= self.settings.chat_max_sockets_per_customer:
            await ws.close(CLOSE_POLICY, "too many sockets for this customer")
            return
        try:
            conversation_id = await self.accept.conversations.current(tenant_id, customer_id)
        except Exception as exc:
            log.warning("chat_widget_redis_failed", error=repr(exc))
            await ws.close(CLOSE_TRY_LATER, "try again later")
            return
        sock = CustomerSocket(ws, tenant_id, customer_id, uuid.uuid4().hex)
        sock.start()
        CHAT_SOCKETS.inc()
        try:
            # Marked back before the socket is live: once it is, a reply may overtake the kept ones below.
            await self._arrived(sock)
            await self.hub.add(sock)
            sock.push({"type": "hello", "conversation_id": conversation_id, "connection_id": sock.connection_id})
            await self.hub.deliver_pending(tenant_id, customer_id)
            await _Session(self, sock, facts, customer, conversation_id).run()
        except WebSocketDisconnect:
            pass
        finally:
            CHAT_SOCKETS.dec()
            await self.hub.remove(sock)
            # Drained first: what this socket could not send is kept for the customer before any newer reply is.
            await sock.drain_and_stop()
            await self._left(sock)

    def _tracks_departures(self, tenant_id: str) -> bool:
        # A shop whose platform takes replies by callback can reach its customers without a socket: never gone.
        tenant = self.tenants.get(tenant_id)
        return self.departures is not None and tenant is not None and not tenant.callback_url

    async def _arrived(self, sock: CustomerSocket) -> None:
        if self.departures is not None and self._tracks_departures(sock.tenant_id):
            await self.departures.socket_opened(sock.tenant_id, sock.customer_id, sock.connection_id)

    async def _left(self, sock: CustomerSocket) -> None:
        """The customer's last socket closing marks their waiting conversation gone (state/departures.py)."""
        if self.departures is None or not self._tracks_departures(sock.tenant_id):
            return
        try:
            await self.departures.socket_closed(
                sock.tenant_id, sock.customer_id, sock.connection_id, int(time.time() * 1000)
            )
        except (RedisError, OSError) as exc:
            # Not marked: the customer keeps waiting, as they would in a shop without a patience window.
            log.warning("chat_departure_not_recorded", tenant_id=sock.tenant_id, error=repr(exc))

    async def _authenticate(self, ws: WebSocket) -> tuple[str, str, TrustedFacts | None] | None:
        """Tenant, customer and the facts the token's claims vouch for (None without claims), or None when the
        socket was closed (unknown tenant 4404, bad customer id or malformed claims 4400, bad token 4401)."""
        tenant_id = ws.query_params.get("tenant", "")
        customer_id = ws.query_params.get("customer", "")
        tenant = self.tenants.get(tenant_id)
        if tenant is None:
            await ws.close(CLOSE_UNKNOWN_TENANT, "unknown tenant")
            return None
        if not customer_id or len(customer_id) > 128 or "{" in customer_id or "}" in customer_id:
            await ws.close(CLOSE_BAD_REQUEST, "customer id missing or invalid")
            return None
        if not self.settings.chat_widget_auth:
            # Nothing is verified, so nothing is vouched for: claims count only under a checked signature.
            return tenant_id, customer_id, None
        claims = ws.query_params.get("claims", "")
        if not self._token_ok(ws, tenant, customer_id, claims):
            await ws.close(CLOSE_UNAUTHORIZED, "bad or expired widget token")
            return None
        try:
            return tenant_id, customer_id, decode_claims(claims) if claims else None
        except InvalidRecord as exc:
            await ws.close(CLOSE_BAD_REQUEST, exc.reason[:120])
            return None

    def _token_ok(self, ws: WebSocket, tenant: Tenant, customer_id: str, claims: str) -> bool:
        expires = ws.query_params.get("expires", "")
        if not expires.isdigit() and (expires or self.settings.chat_widget_token_expiry_required):
            return False
        token = ws.query_params.get("token", "")
        return verify_widget_token(tenant.secret, customer_id, token, int(expires or 0), time.time(), claims)


class _Session:
    """The reading side of one socket: frames in order, limits, accept, ack."""

    def __init__(
        self,
        endpoint: WidgetEndpoint,
        sock: CustomerSocket,
        facts: TrustedFacts | None,
        customer: CustomerRef,
        conversation_id: str,
    ) -> None:
        self.e = endpoint
        self.sock = sock
        self.facts = facts
        self.customer = customer
        # The customer's open conversation as this socket last saw it (its hello, then each message's).
        self.conversation_id = conversation_id
        s = endpoint.settings
        self.bucket = TokenBucket(s.chat_conn_rate_per_s, s.chat_conn_burst)
        self.strikes = 0

    async def run(self) -> None:
        """Read frames while the ones read before are handled: a reader queues them (at most READ_AHEAD_FRAMES
        ahead), a worker answers them in order, so one socket's acks are pipelined and its messages reach the topic
        in the order they were sent."""
        frames: asyncio.Queue[bytes | None] = asyncio.Queue()
        room = asyncio.Semaphore(READ_AHEAD_FRAMES)
        reader = asyncio.create_task(self._read(frames, room), name=f"chat-read-{self.sock.connection_id}")
        try:
            await self._work(frames, room)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    async def _read(self, frames: asyncio.Queue[bytes | None], room: asyncio.Semaphore) -> None:
        try:
            while True:
                await room.acquire()
                event = await self.sock.ws.receive()
                if event["type"] == "websocket.disconnect":
                    return
                frames.put_nowait(event.get("bytes") or (event.get("text") or "").encode())
        finally:
            # The client left (or the socket broke): what it sent before is still handled, then the worker ends.
            frames.put_nowait(None)

    async def _work(self, frames: asyncio.Queue[bytes | None], room: asyncio.Semaphore) -> None:
        while True:
            read = [await frames.get()]
            while not frames.empty():
                read.append(frames.get_nowait())
            for _ in read:
                room.release()
            if not await self._frames([raw for raw in read if raw is not None]) or None in read:
                return

    async def _frames(self, read: list[bytes]) -> bool:
        """Handle frames read together, in order, consecutive messages in one batch; False when the socket was
        closed."""
        batch: list[_Message] = []
        for raw in read:
            step = self._step(raw)
            if isinstance(step, _Message):
                batch.append(step)
                continue
            if batch and not await self._messages(batch):
                return False
            batch = []
            if not await step():
                return False
        return not batch or await self._messages(batch)

    def _step(self, raw: bytes) -> _Message | Callable[[], Awaitable[bool]]:
        """A frame's first checks (no I/O, nothing sent yet): a message to accept, or its answer to run in turn."""
        s = self.e.settings
        # Every frame spends a token, valid or not: a socket sending garbage is limited like one sending messages.
        if not self.bucket.take():
            limited_id = _client_msg_id(raw, s.chat_max_frame_bytes)
            retry_after = max(self.bucket.seconds_to_next(), 0.1)
            return lambda: self._limited(limited_id, retry_after)
        try:
            fields = decode_json(raw, s.chat_max_frame_bytes)
        except InputRefused as exc:
            refused = exc
            return lambda: self._close_refused(raw, refused)
        except InvalidRecord as exc:
            invalid = exc
            return lambda: self._refuse(raw, "", invalid.reason, invalid.error_type)
        kind = fields.get("type")
        if kind == "ping":
            return self._pong
        if kind != "message":
            return lambda: self._refuse(raw, "", "`type` must be message or ping", "invalid_field")
        return self._message_step(raw, fields)

    def _message_step(self, raw: bytes, fields: dict[str, Any]) -> _Message | Callable[[], Awaitable[bool]]:
        client_msg_id = fields.get("client_msg_id")
        if not isinstance(client_msg_id, str) or not client_msg_id or len(client_msg_id) > 128:
            return lambda: self._refuse(
                raw, "", "`client_msg_id` is required (at most 128 characters)", "invalid_field"
            )
        try:
            parsed: ChatInput | InvalidRecord = parse_message(fields, self.e.limits)
        except InvalidRecord as exc:
            parsed = exc
        # Scoped by customer (two widgets may both number their messages 1, 2, 3), hashed: the provider id is
        # written to the topic.
        provider_id = f"ws:{stable_id(self.sock.customer_id)}:{client_msg_id}"
        return _Message(raw, client_msg_id, provider_id, parsed)

    async def _pong(self) -> bool:
        self.sock.push({"type": "pong"})
        return True

    async def _close_refused(self, raw: bytes, refused: InputRefused) -> bool:
        # Not JSON text at all (or too big to read): the client is broken, not the customer's message. Told why,
        # dead-lettered, closed with the code of input_limits (1009 too large, 1007 the rest).
        kept = raw[:1024] if refused.kind == TOO_LARGE else raw
        if not await self._refuse(kept, "", refused.reason, refused.kind):
            return False  # that refusal was the last strike: closed 1008 already
        await self.sock.drain_and_stop()
        await self.sock.ws.close(refused.close_code, close_reason(refused.reason))
        return False

    async def _messages(self, batch: list[_Message]) -> bool:
        """Messages read together: each counted against the customer's limit, the open conversation read and the
        valid ones' markers taken in one Redis round trip, the admitted ones sent in one broker round trip, then
        each answered in order (ack, limited, refused, retry later) as if they had come one by one."""
        sock, e = self.sock, self.e
        counts = [e.rate.count_call(sock.tenant_id, sock.customer_id) for _ in batch]
        valid = [m for m in batch if not isinstance(m.parsed, InvalidRecord)]
        try:
            admission = await e.accept.admit(
                sock.tenant_id, sock.customer_id, self.conversation_id, counts, [m.provider_id for m in valid]
            )
        except TransientError:
            return all(self._retry_later(m.client_msg_id) for m in batch)
        self.conversation_id = admission.conversation_id
        markers = dict(zip(map(id, valid), admission.markers, strict=True))
        offered = self._offered(batch, admission.answers)
        try:
            accepted = await self._offer([(m, markers[id(m)]) for m in offered])
        except TransientError:
            accepted = [None] * len(offered)
        finally:
            await e.accept.release(sock.tenant_id, [(m.provider_id, markers[id(m)]) for m in valid if m not in offered])
        found = dict(zip(map(id, offered), accepted, strict=True))
        for m, count in zip(batch, admission.answers, strict=True):
            if not await self._answer(m, e.rate.within(count), found):
                return False
        return True

    def _offered(self, batch: list[_Message], counts: list[Any]) -> list[_Message]:
        """Which messages are offered: those within the limit and valid, up to a strike that closes the socket (the
        ones after it would not have been read); strikes counted as `_limited` and `_refuse` count them."""
        offered: list[_Message] = []
        strikes = self.strikes
        for m, count in zip(batch, counts, strict=True):
            if self.e.rate.within(count):
                strikes = 0
                if not isinstance(m.parsed, InvalidRecord):
                    offered.append(m)
                    continue
            strikes += 1
            if strikes >= self.e.settings.chat_rate_strikes_to_close:
                break
        return offered

    async def _answer(self, m: _Message, within: bool, found: dict[int, ChatAccepted | None]) -> bool:
        """Answer one message of a batch, as `_messages` decided; False when the socket was closed."""
        if not within:
            return await self._limited(m.client_msg_id, float(self.e.settings.chat_customer_rate_window_s))
        self.strikes = 0
        if isinstance(m.parsed, InvalidRecord):
            return await self._refuse(m.raw, m.client_msg_id, m.parsed.reason, m.parsed.error_type)
        answer = found[id(m)]
        if answer is None:
            return self._retry_later(m.client_msg_id)
        CHAT_MESSAGES.labels("widget", "duplicate" if answer.duplicate else "accepted").inc()
        self.sock.push(
            {
                "type": "ack",
                "client_msg_id": m.client_msg_id,
                "message_id": answer.message_id,
                "conversation_id": answer.conversation_id,
                "duplicate": answer.duplicate,
            }
        )
        return True

    async def _offer(self, offered: list[tuple[_Message, Any]]) -> list[ChatAccepted | None]:
        """The admitted messages (each with its marker's answer) onto the topic; None for one in flight."""
        if not offered:
            return []
        sock = self.sock
        return await self.e.accept.offer_marked(
            [(cast(ChatInput, m.parsed), m.provider_id, marker) for m, marker in offered],
            tenant_id=sock.tenant_id,
            customer=self.customer,
            connection_id=sock.connection_id,
            facts=self.facts,
            conversation_id=self.conversation_id,
        )

    def _retry_later(self, client_msg_id: str) -> bool:
        CHAT_MESSAGES.labels("widget", "retry_later").inc()
        self.e.accept.count(self.sock.tenant_id, InboundOutcome.RETRY_LATER)
        self.sock.push(
            error_frame("retry_later", RETRY_LATER_REASON, client_msg_id, self.e.settings.chat_retry_after_s)
        )
        return True

    async def _limited(self, client_msg_id: str, retry_after: float) -> bool:
        """Answer a frame over the limits; False when this strike closed the socket (1008)."""
        self.strikes += 1
        CHAT_MESSAGES.labels("widget", "rate_limited").inc()
        self.e.accept.count(self.sock.tenant_id, InboundOutcome.RATE_LIMITED)
        self.sock.push(error_frame("rate_limited", "too many messages; slow down", client_msg_id, retry_after))
        return self.strikes < self.e.settings.chat_rate_strikes_to_close or await self._close_flooder()

    async def _close_flooder(self) -> bool:
        log.warning("chat_flood_closed", tenant_id=self.sock.tenant_id, connection_id=self.sock.connection_id)
        await self.sock.drain_and_stop()
        await self.sock.ws.close(CLOSE_POLICY, "rate limit exceeded (messages or refused frames)")
        return False

    async def _refuse(self, raw: bytes, client_msg_id: str, reason: str, error_type: str) -> bool:
        """Answer and record a refused frame; False when it closed the socket: a refused frame is a strike like a
        limited one, so a socket that keeps sending garbage is closed (1008)."""
        self.strikes += 1
        CHAT_MESSAGES.labels("widget", "refused").inc()
        code = "too_large" if error_type == "too_large" else "invalid"
        self.sock.push(error_frame(code, reason, client_msg_id))
        await self.e.accept.refuse(
            source=SOURCE, reason=reason, error_type=error_type, raw=raw, tenant_id=self.sock.tenant_id
        )
        return self.strikes < self.e.settings.chat_rate_strikes_to_close or await self._close_flooder()


def _client_msg_id(raw: bytes, limit: int) -> str:
    """The `client_msg_id` of a frame that has one (so a limited message's answer names it), else ""."""
    try:
        value = decode_json(raw, limit).get("client_msg_id")
    except (InvalidRecord, InputRefused):
        return ""
    return value if isinstance(value, str) and len(value) <= 128 else ""
