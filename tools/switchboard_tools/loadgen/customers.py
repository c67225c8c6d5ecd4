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
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlencode

import aiohttp
import aiosmtplib

from switchboard.chat.facts import encode_claims
from switchboard.chat.signing import widget_token
from switchboard.runtime.logs import get_logger
from switchboard.runtime.signing import signed_headers
from switchboard_tools.loadgen.accounting import Sent
from switchboard_tools.loadgen.fixtures import Credentials, email_address
from switchboard_tools.loadgen.http import HTTP_ERRORS
from switchboard_tools.loadgen.schedule import PlannedConversation, PlannedMessage, caller_number, customer_email
from switchboard_tools.loadgen.sockets import SOCKET_ERRORS, Socket, connect_socket, open_socket

log = get_logger(__name__)

RETRIES = 5
# A member's widget token vouches for their tier this long (a run is shorter; a real shop signs anew per page).
CLAIMS_TTL_S = 3600


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
    # The e-mail adapter's HTTP port (its signed inbound webhook), where the stack knows it.
    email_http: str = ""
    # The stack's processes started for the run, name → pid (services, and Kafka and Redis when started here):
    # the bench reads their CPU time.
    processes: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """For the report."""
        return {k: v for k, v in self.__dict__.items() if k != "processes"}


def _ws(url: str) -> str:
    return url.replace("http://", "ws://", 1).replace("https://", "wss://", 1)


class Signals:
    """What a customer learns about their conversation while waiting: an agent took it (its messages reached the
    agent's desktop), or the bot answered it (an ANSWERED_BY_BOT decision about the conversation id one of its
    messages got). Keyed by the schedule's conversation key."""

    def __init__(self, key_of_tag: dict[str, str]) -> None:
        self._key_of_tag = key_of_tag
        self._keys_of_id: dict[str, set[str]] = {}
        self._bot_ids: set[str] = set()
        self._taken: dict[str, asyncio.Event] = {}
        self._bot: dict[str, asyncio.Event] = {}

    def _event(self, table: dict[str, asyncio.Event], key: str) -> asyncio.Event:
        if key not in table:
            table[key] = asyncio.Event()
        return table[key]

    def taken(self, key: str) -> asyncio.Event:
        """Set once an agent's desktop got one of the conversation's messages."""
        return self._event(self._taken, key)

    def bot_answered(self, key: str) -> asyncio.Event:
        """Set once the bot answered the conversation."""
        return self._event(self._bot, key)

    def delivered(self, tag: str) -> None:
        """A message reached the desktop of the agent who holds its conversation."""
        if (key := self._key_of_tag.get(tag)) is not None:
            self.taken(key).set()

    def on_topic(self, tag: str, conversation_id: str) -> None:
        """A message got its conversation id (seen on the inbound topic)."""
        if (key := self._key_of_tag.get(tag)) is None:
            return
        self._keys_of_id.setdefault(conversation_id, set()).add(key)
        if conversation_id in self._bot_ids:
            self.bot_answered(key).set()

    def bot_answer(self, conversation_id: str) -> None:
        """The router answered a conversation with the bot (the event may be read before the message's record)."""
        self._bot_ids.add(conversation_id)
        for key in self._keys_of_id.get(conversation_id, ()):
            self.bot_answered(key).set()


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
    http: aiohttp.ClientSession | None = None
    signals: Signals = field(default_factory=lambda: Signals({}))
    # Customers still to send something (the drain waits for them): conversation keys.
    deciding: set[str] = field(default_factory=set)
    # What customers did besides writing: `gave_up:<channel>`, `asked_human` (after a bot answer), `skipped`
    # (planned messages not sent because the customer had left).
    behaviour: Counter[str] = field(default_factory=Counter)

    async def until(self, offset_s: float) -> None:
        """Sleep until `offset_s` seconds into the run."""
        delay = self.started_at + offset_s - self.clock()
        if delay > 0:
            await asyncio.sleep(delay)

    async def waits_for_agent(self, conv: PlannedConversation, since: float) -> str:
        """Wait until an agent takes the conversation, the bot answers it, or the customer's patience (from
        `since`, wall clock) runs out: "taken", "bot" or "gave_up" (never "gave_up" for a patient customer)."""
        taken = asyncio.create_task(self.signals.taken(conv.conversation_key).wait())
        bot = asyncio.create_task(self.signals.bot_answered(conv.conversation_key).wait())
        timeout = None if conv.leave_after_s is None else max(0.0, since + conv.leave_after_s - self.clock())
        stop = asyncio.create_task(self.stop.wait())
        try:
            await asyncio.wait([taken, bot, stop], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (taken, bot, stop):
                task.cancel()
        if self.signals.taken(conv.conversation_key).is_set():
            return "taken"
        if self.signals.bot_answered(conv.conversation_key).is_set():
            return "bot"
        return "stopped" if self.stop.is_set() else "gave_up"


def widget_query(secret: bytes, conv: PlannedConversation, now: float) -> dict[str, str]:
    """The widget URL's query as the shop's backend signs it: a member's token vouches for their tier."""
    if not conv.member_tier:
        return {"tenant": conv.tenant_id, "customer": conv.customer_id, "token": widget_token(secret, conv.customer_id)}
    expires = int(now) + CLAIMS_TTL_S
    claims = encode_claims({"member_tier": conv.member_tier})
    token = widget_token(secret, conv.customer_id, expires, claims)
    return {
        "tenant": conv.tenant_id,
        "customer": conv.customer_id,
        "expires": str(expires),
        "claims": claims,
        "token": token,
    }


async def chat_conversation(ctx: CustomerContext, conv: PlannedConversation, linger_s: float) -> None:
    """A customer in the chat widget: connect, send each message at its time, wait for acks, stay for the reply.

    Waiting, the customer reacts: the bot answered → ask for a human (if planned) or go away content; nobody took
    the conversation within their patience → close the widget for good (later planned messages are not sent).
    """
    query = urlencode(widget_query(ctx.creds.chat_secret(conv.tenant_id).encode(), conv, time.time()))
    await ctx.until(conv.start_s)
    ctx.deciding.add(conv.conversation_key)
    assert ctx.http is not None
    try:
        async with open_socket(ctx.http, f"{_ws(ctx.endpoints.chat_http)}/chat/v1/ws?{query}") as ws:
            frames: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
            reader = asyncio.create_task(_read_frames(ws, frames, ctx, conv))
            try:
                if await _chat_until_done(ctx, conv, lambda m: _send_chat(ws, frames, ctx, conv, m)) == "taken":
                    ctx.deciding.discard(conv.conversation_key)
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(linger_s):
                            await ctx.stop.wait()
            finally:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
    except SOCKET_ERRORS as exc:
        # Messages not acknowledged by then are reported as not sent (planned but never acknowledged).
        ctx.error(f"chat_connect:{type(exc).__name__}")
    finally:
        ctx.deciding.discard(conv.conversation_key)


async def _chat_until_done(
    ctx: CustomerContext, conv: PlannedConversation, send: Callable[[PlannedMessage], Awaitable[None]]
) -> str:
    """Send the planned messages while waiting for an agent; react to a bot answer or run out of patience.

    Returns how it ended: "taken" (an agent has it), "bot" (answered, the customer goes), "gave_up" or "stopped".
    """
    left = asyncio.Event()
    watcher = asyncio.create_task(_patience(ctx, conv, left, send))
    try:
        for i, message in enumerate(conv.messages):
            gone = asyncio.create_task(left.wait())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(gone), max(0.0, ctx.started_at + message.offset_s - ctx.clock()))
            gone.cancel()
            if left.is_set():
                ctx.behaviour["skipped"] += len(conv.messages) - i
                break
            await send(message)
        return await watcher
    finally:
        watcher.cancel()


async def _patience(
    ctx: CustomerContext,
    conv: PlannedConversation,
    left: asyncio.Event,
    send: Callable[[PlannedMessage], Awaitable[None]],
) -> str:
    """Wait for an agent; after a bot answer ask for a human once (if planned); leave when patience runs out."""
    since = ctx.started_at + conv.start_s
    outcome = await ctx.waits_for_agent(conv, since)
    if outcome == "bot" and conv.ask_human is not None:
        await asyncio.sleep(conv.ask_human.offset_s)
        ctx.behaviour["asked_human"] += 1
        await send(conv.ask_human)
        ctx.signals.bot_answered(conv.conversation_key).clear()
        outcome = await ctx.waits_for_agent(conv, ctx.clock())
    if outcome == "gave_up":
        ctx.behaviour[f"gave_up:{conv.channel}"] += 1
        left.set()
    return outcome


def _sent(conv: PlannedConversation, message: PlannedMessage, at: float, accepted: bool = True) -> Sent:
    return Sent(message.tag, conv.tenant_id, conv.conversation_key, conv.channel, at, accepted)


async def _read_frames(
    ws: Socket, frames: asyncio.Queue[dict[str, Any]], ctx: CustomerContext, conv: PlannedConversation
) -> None:
    async for raw in ws:
        frame = json.loads(raw)
        if frame.get("type") == "reply":
            ctx.replies.setdefault(conv.conversation_key, ctx.clock())
        elif frame.get("type") in ("ack", "error"):
            await frames.put(frame)


async def _send_chat(
    ws: Socket,
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
    """A customer on a marketplace's IM: the platform posts each message, signed, to the shop's chat webhook.

    The platform reaches the customer later, so they never leave a queue; answered by the bot, they may ask for a
    human (if planned)."""
    ctx.deciding.add(conv.conversation_key)
    try:
        for message in conv.messages:
            await ctx.until(message.offset_s)
            await _post_webhook(ctx, conv, message)
        if conv.ask_human is None:
            return
        if await ctx.waits_for_agent(conv, ctx.clock()) == "bot":
            await asyncio.sleep(conv.ask_human.offset_s)
            ctx.behaviour["asked_human"] += 1
            await _post_webhook(ctx, conv, conv.ask_human)
    finally:
        ctx.deciding.discard(conv.conversation_key)


async def _post_webhook(ctx: CustomerContext, conv: PlannedConversation, message: PlannedMessage) -> None:
    assert ctx.http is not None
    secret = ctx.creds.chat_secret(conv.tenant_id).encode()
    url = f"{ctx.endpoints.chat_http}/chat/v1/webhook/{conv.tenant_id}"
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
                # Signed by the platform, so routing trusts it (a widget frame's tier would be ignored).
                "member_tier": conv.member_tier,
            },
            ensure_ascii=False,
        ).encode()
        headers = {"Content-Type": "application/json", **signed_headers(secret, int(sent_at), body)}
        try:
            async with ctx.http.post(url, data=body, headers=headers) as resp:
                await resp.read()
                status, retry_after = resp.status, resp.headers.get("Retry-After", "1")
        except HTTP_ERRORS as exc:
            ctx.error(f"webhook:{type(exc).__name__}")
            return
        if status == 200:
            ctx.record(_sent(conv, message, sent_at))
            break
        if status != 503:
            ctx.error(f"webhook_{status}")
            ctx.record(_sent(conv, message, sent_at, accepted=False))
            break
        await asyncio.sleep(float(retry_after))


async def email_conversation(ctx: CustomerContext, conv: PlannedConversation) -> None:
    """A customer writes an e-mail to the shop's service address over SMTP."""
    message = conv.messages[0]
    await ctx.until(message.offset_s)
    mail = EmailMessage()
    mail["From"] = customer_email(conv.customer_id)
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
        self._ws: Socket | None = None
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def _connect(self) -> Socket:
        async with self._lock:
            if self._ws is None:
                url = f"{_ws(self.ctx.endpoints.phone_http)}/v1/phone/stream"
                headers = {"X-Api-Key": self.ctx.creds.phone_key(self.tenant_id)}
                assert self.ctx.http is not None
                self._ws = await connect_socket(self.ctx.http, url, headers)
                self._reader = asyncio.create_task(self._read(self._ws))
            return self._ws

    async def _read(self, ws: Socket) -> None:
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
             "caller": caller_number(message), "language": conv.language},
            {"type": "segment", "call_id": call_id, "seq": 0, "speaker": "customer", "text": tagged(message),
             "start_ms": 0, "end_ms": 2500, "confidence": 0.93, "final": True, "at_ms": now_ms},
        ]  # fmt: skip
        for _ in range(RETRIES):
            sent_at = self.ctx.clock()
            try:
                answer = await self._deliver({"id": message.tag, "items": items})
            except SOCKET_ERRORS as exc:
                self.ctx.error(f"phone_stream:{type(exc).__name__}")
                self.ctx.record(_sent(conv, message, sent_at, accepted=False))
                await self._reset()
                return
            if answer.get("type") == "ack":
                self.ctx.record(_sent(conv, message, sent_at))
                await self._hang_up_if_nobody_answers(conv, call_id, sent_at)
                return
            if answer.get("code") != "retry_later":
                self.ctx.error(f"phone_refused:{answer.get('code')}")
                self.ctx.record(_sent(conv, message, sent_at, accepted=False))
                return
            await asyncio.sleep(1.0)
        self.ctx.record(_sent(conv, message, self.ctx.clock(), accepted=False))

    async def _hang_up_if_nobody_answers(self, conv: PlannedConversation, call_id: str, since: float) -> None:
        """A caller nobody took within their patience hangs up: `call.ended`, the call leaves the queue."""
        if conv.leave_after_s is None or await self.ctx.waits_for_agent(conv, since) != "gave_up":
            return
        self.ctx.behaviour["gave_up:phone"] += 1
        ended = {"type": "call.ended", "call_id": call_id, "reason": "caller_hung_up",
                 "at_ms": int(self.ctx.clock() * 1000)}  # fmt: skip
        try:
            answer = await self._deliver({"id": f"{conv.messages[0].tag}-end", "items": [ended]})
        except SOCKET_ERRORS as exc:
            self.ctx.error(f"phone_stream:{type(exc).__name__}")
            return
        if answer.get("type") != "ack":
            self.ctx.error(f"phone_end_refused:{answer.get('code')}")

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
