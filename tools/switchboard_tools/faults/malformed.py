"""The malformed-input sweep: hostile and broken input at every way into a running stack, and what each answered.

`malformed_sweep(stack, count)` sends `count` malformed inputs, spread over the channels (chat widget socket, desk
socket before and after auth, phone stream socket, chat and phone webhooks, the e-mail webhook and SMTP, presence's
operator API, the gateway's login): JSON nested thousands deep, escaped lone surrogates, control characters,
`NaN`, bytes that are not UTF-8, truncated and wrongly typed JSON, ids with braces, oversized bodies. A good answer
is a 4xx (or a 2xx for input that is odd but valid), an SMTP reply, an error frame, or a close with a documented
code (docs/chat-widget.md, docs/desktop-protocol.md, docs/phone-api.md).

Webhooks are signed with the shop's secret (the chat webhook with its chat secret, the e-mail webhook, at the
shop's own URL, with its e-mail webhook secret), as the shop's platform signs them, so the malformed bodies reach
the parsers rather than the signature check. The e-mail webhook's good answers are the ones docs/email.md lists
for a signed request: 200/202 (taken, or not routed), 413, 415, 422 (503 only while Kafka or Redis is down); its
refusals with a DLQ record (415, 422) must leave records on the DLQ topic (some, not each: the tenant's DLQ budget
drops the rest, docs/dlq.md). The desk gets the hostile frames both as a first frame and after a good auth; after
auth the documented answer is an `error` frame (and, for a frame that is not JSON text, a close 1007 right after
it), or a close 4000 (binary), 1009 (too big) or 4029 (flood). It counts what must never happen:

- `5xx`: an HTTP 5xx, or an SMTP connection dropped without a reply, and `unexpected`: an answer the docs do not
  give for the input (a signed e-mail webhook post answered 401, a desk's non-JSON frame not closed 1007, no DLQ
  record at all for the e-mail webhook's refusals) (`lost` column);
- `unanswered`: a socket that neither answered nor closed within the timeout (`duplicated` column);
- `no close code`: a socket closed without one (1005/1006: the handler died) (`double_owned` column);
- `crashed`: stack processes that exited meanwhile (`over_capacity` column).

The `acked` column counts inputs that got a good answer. Zero in the four columns is the goal.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Protocol

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from switchboard.chat.signing import widget_token
from switchboard.dlq.entries import DlqRecord
from switchboard.dlq.reader import Scope, read_dlq
from switchboard.email.webhook import UNSIGNED_PATH as EMAIL_WEBHOOK_PATH
from switchboard.runtime.settings import ServiceSettings
from switchboard.runtime.signing import signed_headers
from switchboard_tools.faults.table import FaultRow
from switchboard_tools.loadgen.fixtures import email_address

TITLE = "malformed inputs"
ANSWER_TIMEOUT_S = 5.0
# HTTP and SMTP answers may wait on more than the input (the e-mail adapter asks the shop's customer lookup for a
# tier before it answers): a hang is what this catches, not a slow lookup.
REQUEST_TIMEOUT_S = 20.0
CONCURRENCY = 16
# Close codes a socket may end a malformed frame with (every one documented for its socket).
GOOD_CLOSES = frozenset({1000, 1007, 1008, 1009, 1013, 4000, 4001, 4002, 4003, 4005, 4008, 4029, 4400, 4401, 4404})
# What docs/email.md answers a signed e-mail webhook post: taken or not routed, too large, wrong content type,
# refused (503, Kafka or Redis down, is let through like every channel's retry-later).
EMAIL_WEBHOOK_GOOD = frozenset({200, 202, 413, 415, 422})
# Error codes of a desk frame that is not JSON text: the socket is closed 1007 right after (docs/desktop-protocol.md).
UNPARSED_DESK_FRAME = frozenset({"invalid_json", "too_deep", "invalid_text"})
# The `source` of the e-mail webhook's DLQ records.
EMAIL_WEBHOOK_SOURCE = f"http:{EMAIL_WEBHOOK_PATH}"


class SweepCreds(Protocol):
    """The stack's secrets a sweep needs."""

    def agent_password(self, tenant_id: str, agent_id: str) -> str: ...
    def chat_secret(self, tenant_id: str) -> str: ...
    def email_secret(self, tenant_id: str) -> str: ...
    def phone_key(self, tenant_id: str) -> str: ...
    def operator_token(self) -> str: ...


class SweepStack(Protocol):
    """What the sweep needs of the harness's stack (faults/stack.py FaultStack)."""

    @property
    def urls(self) -> dict[str, str]: ...

    @property
    def kafka_bootstrap(self) -> str: ...

    smtp: tuple[str, int]
    tenants: list[str]
    agents: dict[str, list[str]]
    creds: Any
    topic_prefix: str

    def crashed(self) -> list[str]: ...


# -- the corpus ----------------------------------------------------------------------------------------------------


def _deep(depth: int, kind: str = "[") -> str:
    close = "]" if kind == "[" else "}"
    if kind == "[":
        return "[" * depth + close * depth
    return '{"a":' * depth + "1" + close * depth


def hostile_bodies(rng: random.Random, valid: dict[str, Any]) -> list[bytes]:
    """Malformed variants of a valid JSON body: each is bytes as a client could send them."""
    text = json.dumps(valid, ensure_ascii=False)
    key = rng.choice(sorted(valid)) if valid else "x"
    depth = rng.choice([40, 1_000, 5_000, 50_000])
    variants = [
        _deep(depth, rng.choice("[{")),
        json.dumps({**valid, key: json.loads(_deep(min(depth, 900)))}, ensure_ascii=False),
        text.replace('"}', '\\ud800"}', 1) if '"}' in text else '{"x": "\\ud800"}',
        json.dumps({**valid, key: "a\\udfffb"}).replace("\\\\udfff", "\\udfff"),
        json.dumps({**valid, key: "bell\u0007nul\u0000esc\u001b[2J"}),
        text[: max(1, len(text) // 2)],
        text.replace("}", ', "n": NaN}', 1),
        text.replace("}", ', "n": ' + "9" * 5000 + "}", 1),
        json.dumps([valid]),
        json.dumps({k: ([1, 2] if isinstance(v, str) else "x") for k, v in valid.items()}),
        json.dumps({**valid, key: "{tenant}" + "\\ud83d"}).replace("\\\\ud83d", "\\ud83d"),
        "",
        "null",
    ]
    raw = [v.encode("utf-8", "surrogatepass") for v in variants]
    raw += [b"\xff\xfe\x00{" + text.encode()[:40], text.encode("utf-16"), b'{"x": "\xc3\x28"}']
    return raw


# -- the answers ---------------------------------------------------------------------------------------------------


@dataclass
class Tally:
    """What the sweep saw."""

    sent: int = 0
    good: int = 0
    five_xx: int = 0
    unexpected: int = 0
    unanswered: int = 0
    no_close_code: int = 0
    # E-mail webhook answers that docs/email.md gives with a DLQ record (415, 422), and the records found.
    email_dead_letters_due: int = 0
    email_dead_letters: int = 0
    by_channel: Counter[str] = field(default_factory=Counter)
    good_by_channel: Counter[str] = field(default_factory=Counter)
    # The e-mail webhook's answers by status.
    email_statuses: Counter[int] = field(default_factory=Counter)
    bad_examples: list[str] = field(default_factory=list)

    def ok(self, channel: str, count: int = 1) -> None:
        """Count good answers."""
        self.good += count
        self.good_by_channel[channel] += count

    def bad(self, channel: str, what: str, kind: str) -> None:
        """Count one bad answer."""
        self.by_channel[f"{channel}:{kind}"] += 1
        if len(self.bad_examples) < 5:
            self.bad_examples.append(f"{channel} {what}")


Probe = Callable[[bytes], Awaitable[None]]


class Sweep:
    """The probes of one stack; each sends one malformed input and judges its answer."""

    def __init__(self, stack: SweepStack, tally: Tally, http: httpx.AsyncClient) -> None:
        self.stack = stack
        self.tally = tally
        self.http = http
        self.tenant = stack.tenants[0]
        self.urls = stack.urls
        self.customer_seq = 0
        self.smtp_seq = 0
        self.email_seq = 0
        self.desk_seq = 0
        self.desk_locks: dict[str, asyncio.Lock] = {}

    # -- HTTP -----------------------------------------------------------------------------------------------------

    async def _http(
        self,
        channel: str,
        method: str,
        url: str,
        body: bytes,
        headers: dict[str, str],
        good: frozenset[int] | None = None,
        params: dict[str, str] | None = None,
    ) -> int | None:
        """Send one request; its status (None: no answer). Under 500 is good unless `good` names the good ones."""
        self.tally.sent += 1
        try:
            answer = await self.http.request(
                method, url, content=body, headers=headers, params=params, timeout=REQUEST_TIMEOUT_S
            )
        except httpx.TimeoutException:
            self.tally.unanswered += 1
            self.tally.bad(channel, f"no answer to {body[:40]!r}", "unanswered")
            return None
        except httpx.TransportError as exc:
            self.tally.five_xx += 1
            self.tally.bad(channel, f"connection failed ({exc!r}) on {body[:40]!r}", "5xx")
            return None
        if answer.status_code >= 500 and answer.status_code != 503:
            self.tally.five_xx += 1
            self.tally.bad(channel, f"{answer.status_code} to {body[:40]!r}", "5xx")
        elif good is not None and answer.status_code not in good:
            self.tally.unexpected += 1
            self.tally.bad(channel, f"{answer.status_code} {answer.text[:80]} to {body[:40]!r}", "unexpected")
        else:
            self.tally.ok(channel)
        return answer.status_code

    async def chat_webhook(self, body: bytes) -> None:
        """Signed by the shop, so the body itself is what is judged."""
        secret = self.stack.creds.chat_secret(self.tenant).encode()
        headers = {"content-type": "application/json", **signed_headers(secret, int(time.time()), body)}
        await self._http("chat-webhook", "POST", f"{self.urls['chat']}/chat/v1/webhook/{self.tenant}", body, headers)

    async def phone_events(self, body: bytes) -> None:
        headers = {"content-type": "application/json", "x-api-key": self.stack.creds.phone_key(self.tenant)}
        await self._http("phone-http", "POST", f"{self.urls['phone']}/v1/phone/events", body, headers)

    async def presence_api(self, body: bytes) -> None:
        agent = self.stack.agents[self.tenant][0]
        url = f"{self.urls['presence']}/v1/operator/tenants/{self.tenant}/agents/{agent}"
        headers = {"content-type": "application/json", "authorization": f"Bearer {self.stack.creds.operator_token()}"}
        await self._http("presence-api", "PATCH", url, body, headers)

    async def gateway_login(self, body: bytes) -> None:
        await self._http(
            "gateway-login", "POST", f"{self.urls['gateway']}/login", body, {"content-type": "application/json"}
        )

    async def email_webhook(self, body: bytes) -> None:
        """Signed by the shop at its own URL, so the parser meets the body: the body inside a mail with headers,
        the body as the whole message (its recipient in the query), or the body under another content type."""
        self.email_seq += 1
        to = email_address(self.tenant)
        params: dict[str, str] | None = None
        content_type = "message/rfc822"
        variant = self.email_seq % 4
        if variant == 0:
            mail, params = body, {"recipient": to}
        else:
            mail = b"From: buyer@example.com\r\nTo: " + to.encode() + b"\r\nSubject: "
            mail += body[:2000].replace(b"\r", b" ").replace(b"\n", b" ") + b"\r\n\r\n" + body
            if variant == 3:
                content_type = "application/json"
        secret = self.stack.creds.email_secret(self.tenant).encode()
        headers = {"content-type": content_type, **signed_headers(secret, int(time.time()), mail)}
        url = f"{self.urls['email']}/v1/email/inbound/{self.tenant}"
        status = await self._http("email-webhook", "POST", url, mail, headers, EMAIL_WEBHOOK_GOOD, params)
        if status is not None:
            self.tally.email_statuses[status] += 1
        if status in (415, 422):
            self.tally.email_dead_letters_due += 1

    # -- sockets --------------------------------------------------------------------------------------------------

    async def _socket(self, channel: str, url: str, frames: list[bytes], headers: dict[str, str] | None = None) -> None:
        """Open a socket, send the frames one by one; each must get a frame back or end the socket with a code."""
        try:
            ws = await connect(url, additional_headers=headers, open_timeout=ANSWER_TIMEOUT_S, max_size=2**22)
        except (OSError, InvalidStatus, TimeoutError) as exc:
            self.tally.sent += len(frames)
            self.tally.five_xx += len(frames)
            self.tally.bad(channel, f"could not connect: {exc!r}", "5xx")
            return
        try:
            await self._drain_greeting(ws)
            for i, frame in enumerate(frames):
                self.tally.sent += 1
                if not await self._one_frame(ws, channel, frame):
                    self.tally.sent += len(frames) - i - 1
                    self.tally.ok(channel, len(frames) - i - 1)  # not sent: the socket ended as it should
                    return
        finally:
            await ws.close()

    async def _drain_greeting(self, ws: ClientConnection) -> None:
        """Read what a socket says on its own at first (the widget's hello, pending replies)."""
        try:
            while True:
                await asyncio.wait_for(ws.recv(), 0.3)
        except (TimeoutError, ConnectionClosed):
            return

    async def _one_frame(self, ws: ClientConnection, channel: str, frame: bytes) -> bool:
        """Send one frame; True when the socket is still open for the next."""
        try:
            await ws.send(frame.decode("utf-8") if _is_text(frame) else frame)
            await asyncio.wait_for(ws.recv(), ANSWER_TIMEOUT_S)
            self.tally.ok(channel)
            return True
        except TimeoutError:
            self.tally.unanswered += 1
            self.tally.bad(channel, f"no answer to {frame[:40]!r}", "unanswered")
            return False
        except ConnectionClosed as closed:
            self._closed(channel, closed, frame)
            return False

    def _closed(self, channel: str, closed: ConnectionClosed, frame: bytes) -> None:
        """Count a socket the server closed on a frame: fine with a documented code, else closed without one."""
        code = closed.rcvd.code if closed.rcvd is not None else None
        if code in GOOD_CLOSES:
            self.tally.ok(channel)
        else:
            self.tally.no_close_code += 1
            self.tally.bad(channel, f"closed with {code} on {frame[:40]!r}", "no_close_code")

    async def widget(self, frames: list[bytes]) -> None:
        self.customer_seq += 1
        customer = f"malformed-{self.customer_seq}"
        token = widget_token(self.stack.creds.chat_secret(self.tenant).encode(), customer)
        base = self.urls["chat"].replace("http://", "ws://")
        url = f"{base}/chat/v1/ws?tenant={self.tenant}&customer={customer}&token={token}"
        await self._socket("widget", url, frames)

    async def desk_first_frame(self, frames: list[bytes]) -> None:
        """Before auth: the first frame decides, so one socket per frame."""
        base = self.urls["gateway"].replace("http://", "ws://")
        for frame in frames:
            await self._socket("desk", f"{base}/desk", [frame])

    async def desk_after_auth(self, frames: list[bytes]) -> None:
        """After a good auth, on one agent's desk: every frame gets an error frame or a documented close; a socket
        closed is opened again (log in, auth) for the frames left, so each of them meets an authenticated desk."""
        self.desk_seq += 1
        agents = self.stack.agents[self.tenant]
        agent = agents[self.desk_seq % len(agents)]
        pending = list(frames)
        async with self.desk_locks.setdefault(agent, asyncio.Lock()):  # one socket per agent: no 4009 in between
            while pending:
                ws = await self._desk_session(agent, len(pending))
                if ws is None:
                    return
                try:
                    while pending:
                        frame = pending.pop(0)
                        self.tally.sent += 1
                        if not await self._desk_frame(ws, frame):
                            break
                finally:
                    await ws.close()

    async def _desk_session(self, agent: str, frames: int) -> ClientConnection | None:
        """A desk socket of `agent` past its auth and snapshot; None (the frames counted as not answered) if not."""
        try:
            login = {"tenant_id": self.tenant, "agent_id": agent}
            login["password"] = self.stack.creds.agent_password(self.tenant, agent)
            resp = await self.http.post(f"{self.urls['gateway']}/login", json=login, timeout=REQUEST_TIMEOUT_S)
            resp.raise_for_status()
            base = self.urls["gateway"].replace("http://", "ws://")
            ws = await connect(f"{base}/desk", open_timeout=ANSWER_TIMEOUT_S, max_size=2**22)
            await ws.send(json.dumps({"type": "auth", "token": resp.json()["token"], "tenant": self.tenant}))
            await asyncio.wait_for(ws.recv(), ANSWER_TIMEOUT_S)  # the snapshot
        except (httpx.HTTPError, OSError, InvalidStatus, TimeoutError, ConnectionClosed) as exc:
            self.tally.sent += frames
            self.tally.unexpected += frames
            self.tally.bad("desk-authed", f"no desk session for {agent}: {exc!r}", "unexpected")
            return None
        await self._drain_greeting(ws)
        return ws

    async def _desk_frame(self, ws: ClientConnection, frame: bytes) -> bool:
        """Send one frame to an authenticated desk; True when the socket is still open for the next.

        Its answer is the next `error` (or `result`) frame, events in between skipped; a frame that is not JSON
        text gets its error and then the close 1007."""
        channel = "desk-authed"
        try:
            await ws.send(frame.decode("utf-8") if _is_text(frame) else frame)
            async with asyncio.timeout(ANSWER_TIMEOUT_S):
                while True:
                    answer = json.loads(await ws.recv())
                    if answer.get("type") in ("error", "result"):
                        break
            if answer.get("code") not in UNPARSED_DESK_FRAME:
                self.tally.ok(channel)
                return True
            async with asyncio.timeout(ANSWER_TIMEOUT_S):
                while True:
                    await ws.recv()
        except TimeoutError:
            self.tally.unanswered += 1
            self.tally.bad(channel, f"no answer (or no close after its error) to {frame[:40]!r}", "unanswered")
            return False
        except ConnectionClosed as closed:
            self._closed(channel, closed, frame)
            return False

    async def phone_stream(self, frames: list[bytes]) -> None:
        base = self.urls["phone"].replace("http://", "ws://")
        headers = {"x-api-key": self.stack.creds.phone_key(self.tenant)}
        await self._socket("phone-stream", f"{base}/v1/phone/stream", frames, headers)

    # -- SMTP -----------------------------------------------------------------------------------------------------

    async def smtp(self, body: bytes) -> None:
        """A malformed message (and a made-up shop's recipient): any reply is good; a dropped line is not."""
        self.tally.sent += 1
        self.smtp_seq += 1
        host, port = self.stack.smtp
        recipient = email_address(self.tenant) if self.smtp_seq % 2 else "nobody@no-such-shop.invalid"
        lines = [b"EHLO sweep.example", b"MAIL FROM:<buyer@example.com>", f"RCPT TO:<{recipient}>".encode(), b"DATA"]
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), ANSWER_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:
            self.tally.five_xx += 1
            self.tally.bad("smtp", f"could not connect: {exc!r}", "5xx")
            return
        try:
            await asyncio.wait_for(_smtp_reply(reader), ANSWER_TIMEOUT_S)
            for line in lines:
                writer.write(line + b"\r\n")
                code = await asyncio.wait_for(_smtp_reply(reader), REQUEST_TIMEOUT_S)
                if code.startswith(b"5"):
                    self.tally.ok("smtp")  # refused at RCPT or DATA, as it should be
                    return
            payload = b"Subject: " + body[:200].replace(b"\r", b"").replace(b"\n", b"") + b"\r\n\r\n" + body
            writer.write(payload.replace(b"\r\n.", b"\r\n..") + b"\r\n.\r\n")
            code = await asyncio.wait_for(_smtp_reply(reader), REQUEST_TIMEOUT_S)
            if code.startswith((b"421", b"451")):
                self.tally.five_xx += 1
                self.tally.bad("smtp", f"{code!r} to {body[:40]!r}", "5xx")
            else:
                self.tally.ok("smtp")
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError) as exc:
            self.tally.five_xx += 1
            self.tally.bad("smtp", f"no reply ({exc!r}) to {body[:40]!r}", "5xx")
        finally:
            writer.close()


def _is_text(frame: bytes) -> bool:
    try:
        frame.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


async def _smtp_reply(reader: asyncio.StreamReader) -> bytes:
    """The code of one (possibly multi-line) SMTP reply."""
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("connection closed")
        if line[3:4] != b"-":
            return line[:3]


# -- the sweep -----------------------------------------------------------------------------------------------------

VALID: dict[str, dict[str, Any]] = {
    "widget": {"type": "message", "client_msg_id": "m1", "kind": "text", "text": "这件有M码吗？"},
    "desk": {"type": "auth", "token": "x.y.z"},
    "desk-command": {"type": "reply", "id": "c1", "conversation_id": "conv-1", "text": "好的", "epoch": 1},
    "phone": {"type": "segment", "call_id": "c-1", "seq": 0, "text": "你好", "start_ms": 0, "end_ms": 10},
    "chat-webhook": {"event_id": "e1", "message_id": "m1", "customer_id": "b1", "text": "你好"},
    "presence": {"capacity": {"chat": 3}, "languages": ["zh"]},
    "login": {"tenant_id": "shop-a", "agent_id": "a-1", "password": "x"},
}


def _plan(sweep: Sweep, rng: random.Random) -> list[Callable[[], Awaitable[None]]]:
    """One round of probes over every channel (about 120 inputs)."""

    def bodies(name: str) -> list[bytes]:
        return hostile_bodies(rng, VALID[name])

    steps: list[Callable[[], Awaitable[None]]] = []
    for frames in _chunks(bodies("widget"), 4):
        steps.append(partial(sweep.widget, frames))
    steps.append(partial(sweep.desk_first_frame, bodies("desk")))
    for frames in _chunks(bodies("desk-command"), 4):
        steps.append(partial(sweep.desk_after_auth, frames))
    for frames in _chunks(bodies("phone"), 4):
        steps.append(partial(sweep.phone_stream, frames))
    for body in bodies("chat-webhook"):
        steps.append(partial(sweep.chat_webhook, body))
    for body in bodies("phone"):
        steps.append(partial(sweep.phone_events, body))
    for body in bodies("presence"):
        steps.append(partial(sweep.presence_api, body))
    for body in bodies("login"):
        steps.append(partial(sweep.gateway_login, body))
    for body in bodies("chat-webhook")[:8]:
        steps.append(partial(sweep.email_webhook, body))
        steps.append(partial(sweep.smtp, body))
    return steps


def _chunks(items: list[bytes], size: int) -> list[list[bytes]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


async def email_dead_letters(stack: SweepStack, tenant_id: str, since: datetime) -> Counter[str]:
    """The DLQ records the e-mail webhook wrote for the shop since `since`, by error type."""
    settings = ServiceSettings(kafka_bootstrap=stack.kafka_bootstrap, topic_prefix=stack.topic_prefix)

    def webhook(record: DlqRecord) -> bool:
        letter = record.letter
        return letter.source.startswith(EMAIL_WEBHOOK_SOURCE) and letter.tenant_id == tenant_id

    scan = await read_dlq(settings, since=since, scope=Scope(keep=webhook, payloads=False))
    return Counter(r.letter.error_type for r in scan.records)


async def malformed_sweep(
    stack: SweepStack, count: int = 10_000, seed: int = 15, tally: Tally | None = None
) -> FaultRow:
    """Send about `count` malformed inputs across every channel; the row counts what went wrong (see module doc).
    `tally`: where the counts go (a test reads them per channel)."""
    rng = random.Random(seed)
    tally = tally if tally is not None else Tally()
    crashed_before = set(stack.crashed())
    started = time.monotonic()
    # A second back: the DLQ's timestamps are the services' clocks, the same machine's.
    since = datetime.now(UTC) - timedelta(seconds=1)
    gate = asyncio.Semaphore(CONCURRENCY)

    async def guarded(step: Callable[[], Awaitable[None]]) -> None:
        async with gate:
            await step()

    async with httpx.AsyncClient() as http:
        sweep = Sweep(stack, tally, http)
        while tally.sent < count:
            steps = _plan(sweep, rng)
            await asyncio.gather(*(guarded(step) for step in steps))
    dead_letters = await email_dead_letters(stack, sweep.tenant, since)
    tally.email_dead_letters = sum(dead_letters.values())
    if tally.email_dead_letters_due and not dead_letters:
        tally.unexpected += 1
        tally.bad("email-webhook", f"{tally.email_dead_letters_due} refusals, no DLQ record", "no_dlq")
    crashed = sorted(set(stack.crashed()) - crashed_before)
    seconds = time.monotonic() - started
    note = (
        f"{tally.sent} inputs in {seconds:.0f} s over widget/desk (before and after auth)/phone sockets, "
        f"chat/phone/e-mail webhooks (signed), SMTP, presence API, gateway login; e-mail webhook refusals with a "
        f"DLQ record {tally.email_dead_letters_due}, records {tally.email_dead_letters} (the rest over the "
        f"shop's DLQ budget); columns: lost = 5xx, dropped SMTP line or an answer the docs do not give, "
        f"duplicated = unanswered sockets, double-owned = sockets closed without a code, over-capacity = crashed "
        f"processes"
    )
    if tally.by_channel:
        note += "; bad: " + ", ".join(f"{k} {v}" for k, v in sorted(tally.by_channel.items()))
    if tally.bad_examples:
        note += "; e.g. " + " | ".join(tally.bad_examples[:3])
    if crashed:
        note += f"; exited: {', '.join(crashed)}"
    return FaultRow(
        TITLE,
        injections=tally.sent,
        acked=tally.good,
        lost=tally.five_xx + tally.unexpected,
        duplicated=tally.unanswered,
        double_owned=tally.no_close_code,
        over_capacity=len(crashed),
        reordered=0,
        recovery_s=None,
        note=note,
    )
