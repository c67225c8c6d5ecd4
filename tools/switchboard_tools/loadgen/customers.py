"""Simulated customers over the real channel entry points: chat widget websocket, SMTP, phone transcript stream.

Every message carries its tag (`[lg:abcdefghij]`) in its text, which is how the accounting finds it again at an
agent's desktop whatever ids the channel gives it. A message counts as sent when the channel acknowledged it
(widget `ack`, SMTP 250, phone `ack`); a "retry later" answer is retried a few times, a refusal is recorded as
refused, and a failure to reach the channel at all is counted as an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlencode

import aiosmtplib
import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from switchboard.chat.signing import signed_headers, widget_token
from switchboard.runtime.logs import get_logger
from switchboard_tools.loadgen.accounting import Sent
from switchboard_tools.loadgen.fixtures import Credentials, email_address
from switchboard_tools.loadgen.schedule import PlannedConversation, PlannedMessage

log = get_logger(__name__)

RETRIES = 5


def tagged(message: PlannedMessage) -> str:
    """The text as sent: the sample text and the tag the accounting matches on."""
    return f"{message.text} [lg:{message.tag}]"


@dataclass(frozen=True)
class Endpoints:
    """Where the stack under test listens (loopback)."""

    chat_http: str
    gateway_http: str
    phone_http: str
    presence_http: str
    smtp_host: str
    smtp_port: int
    kafka_bootstrap: str
    redis_url: str
    topic_prefix: str = ""
    key_prefix: str = "sb"

    def as_dict(self) -> dict[str, Any]:
        """For the report."""
        return dict(self.__dict__)


def _ws(url: str) -> str:
    return url.replace("http://", "ws://", 1).replace("https://", "wss://", 1)


@dataclass
class CustomerContext:
    """What every simulated customer shares: endpoints, secrets, the run's clock and where to report."""

    endpoints: Endpoints
    creds: Credentials
    started_at: float
    record: Callable[[Sent], None]
    error: Callable[[str], None]
    stop: asyncio.Event
    clock: Callable[[], float] = time.time
    replies: dict[str, float] = field(default_factory=dict)
    http: httpx.AsyncClient | None = None

    async def until(self, offset_s: float) -> None:
        """Sleep until `offset_s` seconds into the run."""
        delay = self.started_at + offset_s - self.clock()
        if delay > 0:
            await asyncio.sleep(delay)


async def chat_conversation(ctx: CustomerContext, conv: PlannedConversation, linger_s: float) -> None:
    """A customer in the chat widget: connect, send each message at its time, wait for acks, stay for the reply."""
    secret = ctx.creds.chat_secret(conv.tenant_id).encode()
    query = urlencode(
        {"tenant": conv.tenant_id, "customer": conv.customer_id, "token": widget_token(secret, conv.customer_id)}
    )
    await ctx.until(conv.start_s)
    try:
        async with connect(f"{_ws(ctx.endpoints.chat_http)}/chat/v1/ws?{query}", open_timeout=20) as ws:
            frames: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
            reader = asyncio.create_task(_read_frames(ws, frames, ctx, conv))
            try:
                for message in conv.messages:
                    await ctx.until(message.offset_s)
                    await _send_chat(ws, frames, ctx, conv, message)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(linger_s):
                        await ctx.stop.wait()
            finally:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
    except (OSError, WebSocketException, TimeoutError) as exc:
        # Messages not acknowledged by then are reported as not sent (planned but never acknowledged).
        ctx.error(f"chat_connect:{type(exc).__name__}")


def _sent(conv: PlannedConversation, message: PlannedMessage, at: float, accepted: bool = True) -> Sent:
    return Sent(message.tag, conv.tenant_id, conv.conversation_key, conv.channel, at, accepted)


async def _read_frames(
    ws: ClientConnection, frames: asyncio.Queue[dict[str, Any]], ctx: CustomerContext, conv: PlannedConversation
) -> None:
    with contextlib.suppress(ConnectionClosed):
        async for raw in ws:
            frame = json.loads(raw)
            if frame.get("type") == "reply":
                ctx.replies.setdefault(conv.conversation_key, ctx.clock())
            elif frame.get("type") in ("ack", "error"):
                await frames.put(frame)


async def _send_chat(
    ws: ClientConnection,
    frames: asyncio.Queue[dict[str, Any]],
    ctx: CustomerContext,
    conv: PlannedConversation,
    message: PlannedMessage,
) -> None:
    for _ in range(RETRIES):
        sent_at = ctx.clock()
        frame = {
            "type": "message",
            "client_msg_id": message.tag,
            "kind": "text",
            "text": tagged(message),
            "sent_at": int(sent_at * 1000),
        }
        await ws.send(json.dumps(frame, ensure_ascii=False))
        answer = await _answer_for(frames, message.tag)
        if answer.get("type") == "ack":
            ctx.record(_sent(conv, message, sent_at))
            return
        code = answer.get("code", "")
        if code not in ("retry_later", "rate_limited"):
            ctx.error(f"chat_refused:{code}")
            ctx.record(_sent(conv, message, sent_at, accepted=False))
            return
        await asyncio.sleep(float(answer.get("retry_after_s", 1.0)))
    ctx.error("chat_gave_up")
    ctx.record(_sent(conv, message, ctx.clock(), accepted=False))


async def _answer_for(frames: asyncio.Queue[dict[str, Any]], tag: str) -> dict[str, Any]:
    async with asyncio.timeout(30):
        while True:
            frame = await frames.get()
            if frame.get("client_msg_id") in (tag, ""):
                return frame


async def webhook_conversation(ctx: CustomerContext, conv: PlannedConversation) -> None:
    """A customer on a marketplace's IM: the platform posts each message, signed, to the shop's chat webhook."""
    assert ctx.http is not None
    secret = ctx.creds.chat_secret(conv.tenant_id).encode()
    url = f"{ctx.endpoints.chat_http}/chat/v1/webhook/{conv.tenant_id}"
    for message in conv.messages:
        await ctx.until(message.offset_s)
        for attempt in range(RETRIES):
            sent_at = ctx.clock()
            body = json.dumps(
                {
                    "event_id": f"{message.tag}-{attempt}",
                    "customer_id": conv.customer_id,
                    "message_id": message.tag,
                    "kind": "text",
                    "text": tagged(message),
                    "sent_at": int(sent_at * 1000),
                    "platform": "tmall",
                },
                ensure_ascii=False,
            ).encode()
            headers = {"Content-Type": "application/json", **signed_headers(secret, int(sent_at), body)}
            try:
                resp = await ctx.http.post(url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                ctx.error(f"webhook:{type(exc).__name__}")
                return
            if resp.status_code == 200:
                ctx.record(_sent(conv, message, sent_at))
                break
            if resp.status_code != 503:
                ctx.error(f"webhook_{resp.status_code}")
                ctx.record(_sent(conv, message, sent_at, accepted=False))
                break
            await asyncio.sleep(float(resp.headers.get("Retry-After", "1")))


async def email_conversation(ctx: CustomerContext, conv: PlannedConversation) -> None:
    """A customer writes an e-mail to the shop's service address over SMTP."""
    message = conv.messages[0]
    await ctx.until(message.offset_s)
    mail = EmailMessage()
    mail["From"] = f"{conv.customer_id}@buyers.example"
    mail["To"] = email_address(conv.tenant_id)
    mail["Subject"] = message.text[:40]
    mail["Message-ID"] = f"<{message.tag}@loadgen.switchboard.local>"
    mail.set_content(tagged(message))
    for attempt in range(RETRIES):
        sent_at = ctx.clock()
        try:
            await aiosmtplib.send(
                mail, hostname=ctx.endpoints.smtp_host, port=ctx.endpoints.smtp_port, timeout=30, start_tls=False
            )
        except aiosmtplib.SMTPResponseException as exc:
            if 400 <= exc.code < 500 and attempt < RETRIES - 1:
                await asyncio.sleep(1.0)
                continue
            ctx.error(f"smtp_{exc.code}")
            ctx.record(_sent(conv, message, sent_at, accepted=False))
            return
        except (aiosmtplib.SMTPException, OSError) as exc:
            ctx.error(f"smtp_connect:{type(exc).__name__}")
            ctx.record(_sent(conv, message, sent_at, accepted=False))
            return
        ctx.record(_sent(conv, message, sent_at))
        return


class PhoneStream:
    """One tenant's telephony platform: a websocket carrying its calls' events and transcript segments."""

    def __init__(self, ctx: CustomerContext, tenant_id: str, hotline: str) -> None:
        self.ctx = ctx
        self.tenant_id = tenant_id
        self.hotline = hotline
        self._ws: ClientConnection | None = None
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def _connect(self) -> ClientConnection:
        async with self._lock:
            if self._ws is None:
                url = f"{_ws(self.ctx.endpoints.phone_http)}/v1/phone/stream"
                headers = {"X-Api-Key": self.ctx.creds.phone_key(self.tenant_id)}
                self._ws = await connect(url, additional_headers=headers, open_timeout=20)
                self._reader = asyncio.create_task(self._read(self._ws))
            return self._ws

    async def _read(self, ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for raw in ws:
                frame = json.loads(raw)
                waiter = self._waiting.pop(str(frame.get("id", "")), None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(frame)

    async def call(self, conv: PlannedConversation) -> None:
        """A caller rings the hotline and says their question (call started + one final ASR segment)."""
        message = conv.messages[0]
        await self.ctx.until(message.offset_s)
        call_id = f"call-{message.tag}"
        now_ms = int(self.ctx.clock() * 1000)
        items = [
            {"type": "call.started", "call_id": call_id, "dialled_number": self.hotline, "at_ms": now_ms,
             "caller": f"+86 139 0000 {int(message.tag[:4], 36) % 10000:04d}", "language": conv.language},
            {"type": "segment", "call_id": call_id, "seq": 0, "speaker": "customer", "text": tagged(message),
             "start_ms": 0, "end_ms": 2500, "confidence": 0.93, "final": True, "at_ms": now_ms},
        ]  # fmt: skip
        for _ in range(RETRIES):
            sent_at = self.ctx.clock()
            try:
                answer = await self._deliver({"id": message.tag, "items": items})
            except (OSError, WebSocketException, TimeoutError) as exc:
                self.ctx.error(f"phone_stream:{type(exc).__name__}")
                self.ctx.record(_sent(conv, message, sent_at, accepted=False))
                await self._reset()
                return
            if answer.get("type") == "ack":
                self.ctx.record(_sent(conv, message, sent_at))
                return
            if answer.get("code") != "retry_later":
                self.ctx.error(f"phone_refused:{answer.get('code')}")
                self.ctx.record(_sent(conv, message, sent_at, accepted=False))
                return
            await asyncio.sleep(1.0)
        self.ctx.record(_sent(conv, message, self.ctx.clock(), accepted=False))

    async def _deliver(self, frame: dict[str, Any]) -> dict[str, Any]:
        ws = await self._connect()
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[frame["id"]] = waiter
        await ws.send(json.dumps(frame, ensure_ascii=False))
        async with asyncio.timeout(30):
            return await waiter

    async def _reset(self) -> None:
        async with self._lock:
            if self._ws is not None:
                await self._ws.close()
            self._ws = None

    async def close(self) -> None:
        """Hang up the stream."""
        await self._reset()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
