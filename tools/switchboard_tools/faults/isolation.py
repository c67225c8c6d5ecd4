"""The tenant-isolation sweep: one shop's credentials aimed at another shop's data, across every endpoint, with
canary data planted in each shop first.

Every shop of the stack gets canaries: a chat conversation (signed webhook) whose customer and text carry a
marker unique to that shop, an e-mail conversation (the shop's signed e-mail webhook, from a customer address and
Message-ID of its own) and a phone call started on its own hotline. Then each attempt takes an attacker shop A and a
victim shop B and uses what A legitimately holds against B:

| vector | attempt | refused with |
|---|---|---|
| `chat_webhook` | B's webhook, body signed with A's secret | 401 |
| `chat_widget` | B's widget socket for B's canary customer, token signed with A's secret | close 4401, no frame |
| `gateway_login` | `/login` as B (B's agent with A's agent's password; A's agent under B) | 401 |
| `desk_command` | A's desk: `context`, `accept`, `reply`, `close`, `transfer` of B's canary conversation | `error` |
| `phone_start` | A's API key starts a call on B's hotline | 403 `wrong_tenant` |
| `phone_segment` | A's API key adds a segment (events, or a transcript) to B's canary call | 404 `unknown_call` |
| `phone_stream` | A's stream socket: a segment or `call.ended` of B's canary call | error `unknown_call` |
| | A's stream socket: a call on B's hotline | error `wrong_tenant` |
| `operator_api` | presence's operator API and the board of B with A's chat secret as the bearer | 401 |
| `operator_token` | A's own operator token: B's agents, capacity, board, board login, forwarded controls | 403 |
| | A's token on A's own path with B's agent or B's canary conversation | 404 |
| `email_webhook` | A-signed mail replying to B's canary thread: posted to B's URL | 401 |
| | posted to A's URL for B's address (`recipient=`, or only in `To`) | 422 |
| | posted to A's URL for A's and B's addresses | 202 for A's only |
| `smtp` | mail replying to B's canary thread: from A's customer to B; from A's address to A and B | 250, kept apart |
| | from A's customer to A; to A with B's canary Message-ID as its own | 250, kept apart |

SMTP has no credential to refuse: the recipient names the shop, and what A holds is its customers' and its own
addresses and whatever thread ids it saw. So an SMTP attempt is kept apart (counted with the refused) when its
answer is a 250 and the mail's Message-ID leads (in the shop's thread book, Redis) to a conversation that is not a
canary's of another shop, and its switchboard message id is not another shop's.

A leak is an attempt that was not refused (a 2xx, a `result` or `ack` frame, a socket that stayed open and sent a
frame), any answer to A that holds another shop's marker, a mail of A's that joined another shop's canary
conversation or was taken for its message, and, checked after the attempts, a canary that changed: B's agents'
groups, capacity, multiplier, names or levels, B's canary call no longer `started`, B's canary e-mail thread
pointing elsewhere or answered to another address. Anything else that is no refusal (a 5xx, an unexpected status)
counts as an error. Both go into the row's loss column (`lost`), broken down in `note`; zero is the goal.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlencode

import aiosmtplib
import httpx
import yaml
from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from switchboard.chat.signing import widget_token
from switchboard.email.threads import message_id_hash
from switchboard.runtime.pii import ContactSeal
from switchboard.runtime.redis_client import redis_for
from switchboard.runtime.signing import signed_headers
from switchboard.state.keys import Keys
from switchboard_tools.faults.table import FaultRow
from switchboard_tools.loadgen.fixtures import email_address

VECTORS = (
    "chat_webhook",
    "chat_widget",
    "gateway_login",
    "desk_command",
    "phone_start",
    "phone_segment",
    "phone_stream",
    "operator_api",
    "operator_token",
    "email_webhook",
    "smtp",
)
DESK_COMMANDS = ("context", "accept", "reply", "close", "transfer")
# What each command needs besides its conversation, so that it is refused for the conversation, not its shape.
COMMAND_FIELDS: dict[str, dict[str, Any]] = {
    "reply": {"epoch": 1, "text": "hello"},
    "close": {"wrap_up_code": "resolved"},
    "transfer": {"to_group": "general"},
}
ANSWER_TIMEOUT_S = 10.0
# Commands an attacking desk sends a second: under the gateway's per-desk command rate (SB_COMMAND_RATE, 20), so
# the sweep meets the tenant checks, not the flood limit (a desk over it is closed 4029, an unexpected answer here).
DESK_COMMANDS_PER_S = 10.0
# What the canary checks after the attempts compare of each victim's agents (presence's operator API).
AGENT_FIELDS = ("display_name", "groups", "own_groups", "languages", "capacity", "multiplier", "proficiency")


class SweepCredentials(Protocol):
    """The per-shop secrets of the stack (loadgen.fixtures.Credentials)."""

    def agent_password(self, tenant_id: str, agent_id: str) -> str: ...
    def chat_secret(self, tenant_id: str) -> str: ...
    def phone_key(self, tenant_id: str) -> str: ...
    def email_secret(self, tenant_id: str) -> str: ...
    def email_customer_key(self) -> str: ...
    def shop_operator_token(self, tenant_id: str) -> str: ...


class SweepStack(Protocol):
    """What the sweep needs of a running stack (faults.stack.FaultStack has it)."""

    @property
    def urls(self) -> dict[str, str]: ...

    @property
    def redis_url(self) -> str: ...

    tenants: list[str]
    agents: dict[str, list[str]]
    creds: Any
    config_env: dict[str, str]
    smtp: tuple[str, int]
    key_prefix: str


@dataclass
class Canary:
    """What a shop holds that no other shop may reach."""

    tenant_id: str
    marker: str
    customer_id: str
    conversation_id: str
    call_id: str
    hotline: str
    # The e-mail canary: the shop's address, its customer's, the mail's Message-ID (no brackets), the conversation
    # and switchboard message id the shop's webhook answered.
    shop_address: str = ""
    email_customer: str = ""
    email_message_id: str = ""
    email_conversation: str = ""
    email_switchboard_id: str = ""
    # The shop's agents as presence showed them before the attempts (AGENT_FIELDS of each).
    agents: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class Outcome:
    """What the attempts did."""

    attempts: int = 0
    refused: int = 0
    by_vector: Counter[str] = field(default_factory=Counter)
    leaks: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def record(self, vector: str, verdict: str, what: str) -> None:
        """Count one attempt: verdict `refused`, `leak` or `error`."""
        self.attempts += 1
        self.by_vector[vector] += 1
        if verdict == "refused":
            self.refused += 1
        elif verdict == "leak":
            self.leaks.append(f"{vector}: {what}"[:500])
        else:
            self.errors.append(f"{vector}: {what}"[:500])


@dataclass
class Sweep:
    """One run: the stack, its canaries, an HTTP client, Redis, and one desk and phone socket per attacking shop."""

    stack: SweepStack
    http: httpx.AsyncClient
    redis: Redis
    canaries: dict[str, Canary] = field(default_factory=dict)
    outcome: Outcome = field(default_factory=Outcome)
    desks: dict[str, ClientConnection] = field(default_factory=dict)
    desk_locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    # When each attacking desk may send its next command (DESK_COMMANDS_PER_S).
    desk_next: dict[str, float] = field(default_factory=dict)
    streams: dict[str, ClientConnection] = field(default_factory=dict)
    stream_locks: dict[str, asyncio.Lock] = field(default_factory=dict)

    @property
    def creds(self) -> SweepCredentials:
        creds: SweepCredentials = self.stack.creds
        return creds

    @property
    def keys(self) -> Keys:
        return Keys(self.stack.key_prefix)

    def url(self, service: str) -> str:
        return self.stack.urls[service]

    def foreign_markers(self, attacker: str) -> list[str]:
        return [c.marker for t, c in self.canaries.items() if t != attacker]

    def judge(self, vector: str, attacker: str, refused: bool, answer: str, what: str) -> None:
        """Count an attempt answered: refused and free of other shops' markers, else a leak."""
        seen = [m for m in self.foreign_markers(attacker) if m in answer]
        if seen or not refused:
            self.outcome.record(vector, "leak", f"{what} -> {answer[:200]}")
        else:
            self.outcome.record(vector, "refused", what)

    async def thread_of(self, tenant_id: str, message_id: str) -> str | None:
        """The conversation a Message-ID leads to in the shop's e-mail thread book (None: unknown there)."""
        found = await self.redis.get(self.keys.email_thread(tenant_id, message_id_hash(message_id)))
        return found.decode() if isinstance(found, bytes) else found

    async def reply_address(self, tenant_id: str, conversation_id: str) -> str:
        """Where the shop's e-mail conversation answers: its reply contact's address, opened with the stack's key."""
        sealed = await self.redis.hget(self.keys.email_contact(tenant_id, conversation_id), "customer_address")
        text = sealed.decode() if isinstance(sealed, bytes) else (sealed or "")
        return ContactSeal(self.creds.email_customer_key().encode()).open(text)


# -- canaries ------------------------------------------------------------------------------------------------------


def _hotlines(config_env: Mapping[str, str]) -> dict[str, str]:
    """The first hotline of each shop, from the stack's phone directory."""
    path = config_env.get("SB_PHONE_DIRECTORY")
    if not path:
        return {}
    directory = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    found = {}
    for tenant in directory.get("tenants", []):
        first = tenant["numbers"][0]
        found[tenant["tenant_id"]] = first if isinstance(first, str) else first["number"]
    return found


def _webhook_body(customer_id: str, text: str, marker: str) -> bytes:
    event = uuid.uuid4().hex
    body = {"event_id": f"evt-{event}", "message_id": f"msg-{event}", "customer_id": customer_id, "text": text}
    return json.dumps({**body, "kind": "text", "sent_at": int(time.time() * 1000), "display_name": marker}).encode()


async def _post_webhook(sweep: Sweep, tenant: str, secret_of: str, body: bytes) -> httpx.Response:
    secret = sweep.creds.chat_secret(secret_of).encode()
    headers = {"Content-Type": "application/json", **signed_headers(secret, int(time.time()), body)}
    return await sweep.http.post(f"{sweep.url('chat')}/chat/v1/webhook/{tenant}", content=body, headers=headers)


def _mail(sender: str, to: Sequence[str], message_id: str, subject: str, text: str, in_reply_to: str = "") -> bytes:
    """A plain customer mail (`message_id` and `in_reply_to` without brackets)."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{message_id}>"
    if in_reply_to:
        msg["In-Reply-To"] = f"<{in_reply_to}>"
        msg["References"] = f"<{in_reply_to}>"
    msg.set_content(text)
    return msg.as_bytes()


async def _post_email(
    sweep: Sweep, url_of: str, secret_of: str, raw: bytes, recipients: Sequence[str] = ()
) -> httpx.Response:
    """Post a mail to `url_of`'s e-mail webhook, signed with `secret_of`'s webhook secret."""
    secret = sweep.creds.email_secret(secret_of).encode()
    headers = {"Content-Type": "message/rfc822", **signed_headers(secret, int(time.time()), raw)}
    url = f"{sweep.url('email')}/v1/email/inbound/{url_of}"
    return await sweep.http.post(url, content=raw, headers=headers, params=[("recipient", r) for r in recipients])


async def _agents(sweep: Sweep, tenant: str) -> dict[str, dict[str, Any]]:
    """The shop's agents as presence shows them to the shop's own operator (AGENT_FIELDS)."""
    headers = {"Authorization": f"Bearer {sweep.creds.shop_operator_token(tenant)}"}
    url = f"{sweep.url('presence')}/v1/operator/tenants/{tenant}/agents"
    resp = await sweep.http.get(url, headers=headers, params={"limit": 5000})
    resp.raise_for_status()
    return {a["agent_id"]: {f: a.get(f) for f in AGENT_FIELDS} for a in resp.json()["agents"]}


async def plant_canaries(sweep: Sweep) -> None:
    """A chat conversation, an e-mail conversation and a phone call per shop, each marked with the shop's own
    marker; and each shop's agents as they are before the attempts."""
    hotlines = _hotlines(sweep.stack.config_env)
    for tenant in sweep.stack.tenants:
        marker = f"CANARY{uuid.uuid4().hex[:16]}"
        customer = f"canary-{marker.lower()}"
        resp = await _post_webhook(sweep, tenant, tenant, _webhook_body(customer, f"secret order of {marker}", marker))
        resp.raise_for_status()
        conversation = str(resp.json()["conversation_id"])
        call_id = f"canary-call-{marker.lower()}"
        hotline = hotlines.get(tenant, "")
        if hotline:
            started = await _phone(sweep, tenant, [_call_started(call_id, hotline)])
            started.raise_for_status()
        canary = Canary(tenant, marker, customer, conversation, call_id, hotline)
        canary.shop_address = email_address(tenant)
        canary.email_customer = f"{customer}@buyer.example"
        canary.email_message_id = f"{customer}@buyer.example"
        raw = _mail(
            canary.email_customer,
            [canary.shop_address],
            canary.email_message_id,
            f"order {marker}",
            f"secret order of {marker}",
        )
        mailed = await _post_email(sweep, tenant, tenant, raw)
        if mailed.status_code != 202:
            raise RuntimeError(f"the e-mail canary of {tenant} was answered {mailed.status_code}: {mailed.text}")
        canary.email_conversation = str(mailed.json()["conversation_ids"][0])
        canary.email_switchboard_id = str(mailed.json()["message_ids"][0])
        canary.agents = await _agents(sweep, tenant)
        sweep.canaries[tenant] = canary


async def check_canaries(sweep: Sweep) -> None:
    """After the attempts: every shop's canaries as they were planted (a change is a leak)."""
    for tenant, canary in sweep.canaries.items():
        agents = await _agents(sweep, tenant)
        for agent, before in canary.agents.items():
            if agents.get(agent) != before:
                sweep.outcome.leaks.append(f"state: {tenant}/{agent} changed: {before} -> {agents.get(agent)}")
        if canary.hotline:
            state = await sweep.redis.hget(sweep.keys.phone_call(tenant, canary.call_id), "state")
            if (state.decode() if isinstance(state, bytes) else state) != "started":
                sweep.outcome.leaks.append(f"state: {tenant}'s canary call {canary.call_id} is {state!r}")
        thread = await sweep.thread_of(tenant, canary.email_message_id)
        if thread != canary.email_conversation:
            sweep.outcome.leaks.append(f"state: {tenant}'s canary mail leads to {thread}")
        to = await sweep.reply_address(tenant, canary.email_conversation)
        if to != canary.email_customer:
            sweep.outcome.leaks.append(f"state: {tenant}'s canary e-mail conversation now answers {to!r}")


def _call_started(call_id: str, hotline: str) -> dict[str, Any]:
    return {"type": "call.started", "call_id": call_id, "caller": "13800000000", "dialled_number": hotline}


def _segment(call_id: str, seq: int) -> dict[str, Any]:
    segment = {"type": "segment", "call_id": call_id, "seq": seq, "speaker": "customer"}
    return segment | {"text": "let me in", "start_ms": 0, "end_ms": 10, "confidence": 0.9, "final": True}


async def _phone(sweep: Sweep, key_of: str, items: list[dict[str, Any]]) -> httpx.Response:
    headers = {"X-Api-Key": sweep.creds.phone_key(key_of)}
    return await sweep.http.post(f"{sweep.url('phone')}/v1/phone/events", json={"items": items}, headers=headers)


# -- the vectors ---------------------------------------------------------------------------------------------------


def _refusal(resp: httpx.Response, expected: int) -> bool | None:
    """True: refused as documented; False: accepted (a leak); None: neither (an error)."""
    if resp.status_code == expected:
        return True
    if 200 <= resp.status_code < 300:
        return False
    return None


def _judge_http(sweep: Sweep, vector: str, attacker: str, resp: httpx.Response, expected: int, what: str) -> None:
    refused = _refusal(resp, expected)
    if refused is None:
        sweep.outcome.record(vector, "error", f"{what} -> {resp.status_code} {resp.text[:200]}")
        return
    sweep.judge(vector, attacker, refused, resp.text, what)


async def chat_webhook(sweep: Sweep, attacker: str, victim: Canary, n: int) -> None:
    body = _webhook_body(victim.customer_id, f"attempt {n}", "intruder")
    resp = await _post_webhook(sweep, victim.tenant_id, attacker, body)
    _judge_http(sweep, "chat_webhook", attacker, resp, 401, f"{attacker} -> webhook of {victim.tenant_id}")


async def chat_widget(sweep: Sweep, attacker: str, victim: Canary, n: int) -> None:
    token = widget_token(sweep.creds.chat_secret(attacker).encode(), victim.customer_id)
    query = urlencode({"tenant": victim.tenant_id, "customer": victim.customer_id, "token": token})
    url = sweep.url("chat").replace("http://", "ws://", 1) + f"/chat/v1/ws?{query}"
    what = f"{attacker} -> widget of {victim.tenant_id}"
    try:
        async with connect(url, open_timeout=ANSWER_TIMEOUT_S) as ws:
            frame = await asyncio.wait_for(ws.recv(), ANSWER_TIMEOUT_S)
    except ConnectionClosed as closed:
        code = closed.rcvd.code if closed.rcvd is not None else None
        if code == 4401:
            sweep.judge("chat_widget", attacker, True, "", what)
        else:
            sweep.outcome.record("chat_widget", "error", f"{what} -> close {code}")
        return
    except (InvalidStatus, OSError, TimeoutError) as exc:
        sweep.outcome.record("chat_widget", "error", f"{what} -> {exc!r}")
        return
    sweep.judge("chat_widget", attacker, False, str(frame), what)


async def gateway_login(sweep: Sweep, attacker: str, victim: Canary, n: int) -> None:
    own = sweep.stack.agents[attacker][n % len(sweep.stack.agents[attacker])]
    password = sweep.creds.agent_password(attacker, own)
    theirs = sweep.stack.agents[victim.tenant_id][n % len(sweep.stack.agents[victim.tenant_id])]
    agent = theirs if n % 2 else own
    body = {"tenant_id": victim.tenant_id, "agent_id": agent, "password": password}
    resp = await sweep.http.post(f"{sweep.url('gateway')}/login", json=body)
    what = f"{attacker}/{own}'s password -> login as {victim.tenant_id}/{agent}"
    _judge_http(sweep, "gateway_login", attacker, resp, 401, what)


async def _desk(sweep: Sweep, attacker: str) -> ClientConnection:
    """The attacker's desk socket (its last agent), opened on first use and again after a close."""
    desk = sweep.desks.get(attacker)
    if desk is not None and desk.close_code is None:
        return desk
    agent = sweep.stack.agents[attacker][-1]
    login = {"tenant_id": attacker, "agent_id": agent, "password": sweep.creds.agent_password(attacker, agent)}
    resp = await sweep.http.post(f"{sweep.url('gateway')}/login", json=login)
    resp.raise_for_status()
    url = sweep.url("gateway").replace("http://", "ws://", 1) + "/desk"
    desk = await connect(url, max_size=2**22, open_timeout=ANSWER_TIMEOUT_S)
    await desk.send(json.dumps({"type": "auth", "token": resp.json()["token"], "tenant": attacker}))
    snapshot = await asyncio.wait_for(desk.recv(), ANSWER_TIMEOUT_S)
    # the snapshot is an answer to the attacker too
    sweep.judge("desk_command", attacker, True, str(snapshot), f"{attacker} desk snapshot")
    sweep.desks[attacker] = desk
    return desk


async def desk_command(sweep: Sweep, attacker: str, victim: Canary, n: int) -> None:
    kind = DESK_COMMANDS[n % len(DESK_COMMANDS)]
    command: dict[str, Any] = {"type": kind, "id": f"iso-{n}", "conversation_id": victim.conversation_id}
    command |= COMMAND_FIELDS.get(kind, {})
    what = f"{attacker} desk {kind} on {victim.tenant_id}/{victim.conversation_id}"
    lock = sweep.desk_locks.setdefault(attacker, asyncio.Lock())
    async with lock:  # one command in flight per socket: its answer is the next frame with its id
        now = time.monotonic()
        await asyncio.sleep(max(0.0, sweep.desk_next.get(attacker, now) - now))
        sweep.desk_next[attacker] = max(now, sweep.desk_next.get(attacker, now)) + 1.0 / DESK_COMMANDS_PER_S
        try:
            desk = await _desk(sweep, attacker)
            await desk.send(json.dumps(command))
            answer = await _answer_to(desk, command["id"])
        except (ConnectionClosed, TimeoutError, OSError) as exc:
            sweep.outcome.record("desk_command", "error", f"{what} -> {exc!r}")
            return
    sweep.judge("desk_command", attacker, answer.get("type") == "error", json.dumps(answer, ensure_ascii=False), what)


async def _answer_to(
    socket: ClientConnection, frame_id: str, kinds: tuple[str, ...] = ("result", "error")
) -> dict[str, Any]:
    """The frame of one of `kinds` answering `frame_id` (events and stats frames in between are skipped)."""
    async with asyncio.timeout(ANSWER_TIMEOUT_S):
        while True:
            frame = json.loads(await socket.recv())
            if frame.get("id") == frame_id and frame.get("type") in kinds:
                return dict(frame)


async def phone_start(sweep: Sweep, attacker: str, victim: Canary, n: int) -> None:
    if not victim.hotline:
        return
    resp = await _phone(sweep, attacker, [_call_started(f"iso-{n}-{uuid.uuid4().hex[:8]}", victim.hotline)])
    _judge_http(sweep, "phone_start", attacker, resp, 403, f"{attacker} key -> call on {victim.tenant_id}'s hotline")


async def phone_segment(sweep: Sweep, attacker: str, victim: Canary, n: int) -> None:
    if not victim.hotline:
        return
    headers = {"X-Api-Key": sweep.creds.phone_key(attacker)}
    if n % 2:
        transcript = {"segments": [{"speaker": "customer", "text": "let me in", "start_ms": 0, "end_ms": 10}]}
        url = f"{sweep.url('phone')}/v1/phone/calls/{victim.call_id}/transcript"
        resp = await sweep.http.post(url, json=transcript, headers=headers)
        what = f"{attacker} key -> transcript of {victim.tenant_id}'s call"
    else:
        resp = await _phone(sweep, attacker, [_segment(victim.call_id, n + 1)])
        what = f"{attacker} key -> segment of {victim.tenant_id}'s call"
    _judge_http(sweep, "phone_segment", attacker, resp, 404, what)


async def _stream(sweep: Sweep, attacker: str) -> ClientConnection:
    """The attacker's phone stream socket (its own API key), opened on first use and again after a close."""
    stream = sweep.streams.get(attacker)
    if stream is not None and stream.close_code is None:
        return stream
    url = sweep.url("phone").replace("http://", "ws://", 1) + "/v1/phone/stream"
    headers = {"X-Api-Key": sweep.creds.phone_key(attacker)}
    stream = await connect(url, additional_headers=headers, max_size=2**22, open_timeout=ANSWER_TIMEOUT_S)
    sweep.streams[attacker] = stream
    return stream


async def phone_stream(sweep: Sweep, attacker: str, victim: Canary, n: int) -> None:
    if not victim.hotline:
        return
    variant = n % 3
    if variant == 0:
        item, code, what = _segment(victim.call_id, n + 1), "unknown_call", "segment of"
    elif variant == 1:
        item = _call_started(f"iso-{n}-{uuid.uuid4().hex[:8]}", victim.hotline)
        code, what = "wrong_tenant", "call on the hotline of"
    else:
        item, code, what = {"type": "call.ended", "call_id": victim.call_id}, "unknown_call", "call.ended of"
    what = f"{attacker} stream -> {what} {victim.tenant_id}'s call"
    frame_id = f"iso-{n}"
    async with sweep.stream_locks.setdefault(attacker, asyncio.Lock()):
        try:
            stream = await _stream(sweep, attacker)
            await stream.send(json.dumps({"id": frame_id, "items": [item]}))
            answer = await _answer_to(stream, frame_id, ("ack", "error"))
        except (ConnectionClosed, TimeoutError, OSError, InvalidStatus) as exc:
            sweep.outcome.record("phone_stream", "error", f"{what} -> {exc!r}")
            return
    text = json.dumps(answer, ensure_ascii=False)
    if answer["type"] == "error" and answer.get("code") != code:
        sweep.outcome.record("phone_stream", "error", f"{what} -> {text[:200]}")
        return
    sweep.judge("phone_stream", attacker, answer["type"] == "error", text, what)


async def operator_api(sweep: Sweep, attacker: str, victim: Canary, n: int) -> None:
    bearer = {"Authorization": f"Bearer {sweep.creds.chat_secret(attacker)}"}
    if n % 2:
        url = f"{sweep.url('presence')}/v1/operator/tenants/{victim.tenant_id}/agents"
    else:
        url = f"{sweep.url('gateway')}/v1/board/tenants/{victim.tenant_id}/conversations/{victim.conversation_id}"
    resp = await sweep.http.get(url, headers=bearer)
    _judge_http(sweep, "operator_api", attacker, resp, 401, f"{attacker} secret -> {url}")


async def operator_token(sweep: Sweep, attacker: str, victim: Canary, n: int) -> None:
    """A's own operator token, valid for A only: B's paths are 403, A's paths naming B's things 404."""
    bearer = {"Authorization": f"Bearer {sweep.creds.shop_operator_token(attacker)}"}
    b, a = victim.tenant_id, attacker
    their_agent = sweep.stack.agents[b][n % len(sweep.stack.agents[b])]
    presence = f"{sweep.url('presence')}/v1/operator/tenants"
    board = f"{sweep.url('gateway')}/v1/board"
    intruder = {"display_name": "intruder", "capacity": {"chat": 0}}
    attempts: list[tuple[str, str, dict[str, Any] | None, int]] = [
        ("GET", f"{presence}/{b}/agents", None, 403),
        ("PATCH", f"{presence}/{b}/agents/{their_agent}", intruder, 403),
        ("POST", f"{presence}/{b}/capacity", {"factor": 0.1}, 403),
        ("PUT", f"{presence}/{a}/agents/{their_agent}/status", {"status": "away", "reason": "intruder"}, 404),
        ("PATCH", f"{presence}/{a}/agents/{their_agent}", intruder, 404),
        ("GET", f"{board}/tenants/{b}/conversations/{victim.conversation_id}", None, 403),
        ("GET", f"{board}/tenants/{a}/conversations/{victim.conversation_id}", None, 404),
        ("POST", f"{board}/login", {"tenant_id": b, "token": sweep.creds.shop_operator_token(a)}, 403),
        ("POST", f"{board}/tenants/{b}/operator/capacity", {"factor": 0.1}, 403),
    ]
    method, url, body, expected = attempts[n % len(attempts)]
    resp = await sweep.http.request(method, url, headers=bearer, json=body)
    _judge_http(sweep, "operator_token", attacker, resp, expected, f"{attacker} operator token: {method} {url}")


async def email_webhook(sweep: Sweep, attacker: str, victim: Canary, n: int) -> None:
    """Mail A signed, replying to B's canary thread: B's URL 401; A's URL for B's address 422; A's URL for A's
    and B's addresses 202 for A's alone. In every case nothing of it in B's thread book."""
    own = sweep.canaries[attacker]
    message_id = f"iso-{n}-{uuid.uuid4().hex[:8]}@intruder.example"
    variant = n % 4
    to = [own.shop_address, victim.shop_address] if variant == 3 else [victim.shop_address]
    raw = _mail(own.email_customer, to, message_id, "Re: order", f"attempt {n}", victim.email_message_id)
    if variant == 0:
        resp = await _post_email(sweep, victim.tenant_id, attacker, raw, [victim.shop_address])
        expected, what = 401, f"{attacker}-signed mail -> {victim.tenant_id}'s URL"
    elif variant == 1:
        resp = await _post_email(sweep, attacker, attacker, raw, [victim.shop_address])
        expected, what = 422, f"{attacker}'s URL, recipient={victim.shop_address}"
    elif variant == 2:
        resp = await _post_email(sweep, attacker, attacker, raw)
        expected, what = 422, f"{attacker}'s URL, To: {victim.shop_address}"
    else:
        resp = await _post_email(sweep, attacker, attacker, raw)
        expected, what = 202, f"{attacker}'s URL, To: {own.shop_address}, {victim.shop_address}"
    reached = await sweep.thread_of(victim.tenant_id, message_id)
    if reached is not None:
        sweep.outcome.record("email_webhook", "leak", f"{what} -> in {victim.tenant_id}'s conversation {reached}")
        return
    if variant == 3:
        if resp.status_code != 202:
            sweep.outcome.record("email_webhook", "error", f"{what} -> {resp.status_code} {resp.text[:200]}")
            return
        # Taken for A alone: a conversation of A's, none of B's.
        foreign = {c.email_conversation for t, c in sweep.canaries.items() if t != attacker}
        theirs = [c for c in resp.json().get("conversation_ids", []) if c in foreign]
        sweep.judge("email_webhook", attacker, not theirs, resp.text, what)
        return
    _judge_http(sweep, "email_webhook", attacker, resp, expected, what)


async def _smtp_send(sweep: Sweep, sender: str, recipients: list[str], raw: bytes) -> tuple[int, str]:
    """(code, text) of the SMTP transaction's last reply."""
    host, port = sweep.stack.smtp
    try:
        _, message = await aiosmtplib.send(
            raw, sender=sender, recipients=recipients, hostname=host, port=port, timeout=ANSWER_TIMEOUT_S
        )
    except aiosmtplib.SMTPRecipientsRefused as exc:
        first = exc.recipients[0]
        return first.code, first.message
    except aiosmtplib.SMTPResponseException as exc:
        return exc.code, exc.message
    return 250, message


async def smtp(sweep: Sweep, attacker: str, victim: Canary, n: int) -> None:
    """Mail that replies to B's canary thread (In-Reply-To and References), by what A has: its customer's address,
    its own shop address, B's canary Message-ID. Taken (250), but never into B's canary conversation, never as B's
    message; B's canary conversation still answers B's customer."""
    own = sweep.canaries[attacker]
    message_id = f"iso-{n}-{uuid.uuid4().hex[:8]}@intruder.example"
    variant = n % 4
    sender, to = own.email_customer, [victim.shop_address]
    if variant == 1:
        sender, to = own.shop_address, [own.shop_address, victim.shop_address]
    elif variant == 2:
        to = [own.shop_address]
    elif variant == 3:
        message_id, to = victim.email_message_id, [own.shop_address]
    what = f"{attacker} smtp {sender} -> {', '.join(to)} re {victim.tenant_id}'s thread ({variant})"
    raw = _mail(sender, to, message_id, "Re: order", f"attempt {n}", victim.email_message_id)
    try:
        code, text = await _smtp_send(sweep, sender, to, raw)
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        sweep.outcome.record("smtp", "error", f"{what} -> {exc!r}")
        return
    if code != 250:
        sweep.outcome.record("smtp", "error", f"{what} -> {code} {text[:200]}")
        return
    problems: list[str] = []
    if victim.email_switchboard_id and victim.email_switchboard_id in text:
        problems.append(f"taken as {victim.tenant_id}'s message")
    tenants = {email_address(t): t for t in sweep.canaries}
    foreign = {c.email_conversation for t, c in sweep.canaries.items() if t != attacker} | {victim.email_conversation}
    for address in to:
        joined = await sweep.thread_of(tenants[address], message_id)
        if joined in foreign:
            problems.append(f"joined {joined} at {tenants[address]}")
        elif joined is None and "not routed" not in text:
            sweep.outcome.record("smtp", "error", f"{what} -> {text[:120]}, but no thread at {tenants[address]}")
            return
    contact = await sweep.reply_address(victim.tenant_id, victim.email_conversation)
    if contact != victim.email_customer:
        problems.append(f"{victim.tenant_id}'s canary conversation now answers {contact!r}")
    sweep.judge("smtp", attacker, not problems, f"{text} {problems}", what)


ATTEMPTS: dict[str, Callable[[Sweep, str, Canary, int], Awaitable[None]]] = {
    "chat_webhook": chat_webhook,
    "chat_widget": chat_widget,
    "gateway_login": gateway_login,
    "desk_command": desk_command,
    "phone_start": phone_start,
    "phone_segment": phone_segment,
    "phone_stream": phone_stream,
    "operator_api": operator_api,
    "operator_token": operator_token,
    "email_webhook": email_webhook,
    "smtp": smtp,
}


def plan(tenants: Sequence[str], attempts: int) -> list[tuple[str, str, str]]:
    """`attempts` (vector, attacker, victim) triples: every vector, every ordered pair of shops, in turn."""
    pairs = [(a, b) for a in tenants for b in tenants if a != b]
    if not pairs:
        raise ValueError("the isolation sweep needs two shops")
    combos = itertools.cycle((v, a, b) for (a, b) in pairs for v in VECTORS)
    return list(itertools.islice(combos, attempts))


async def _attempt(sweep: Sweep, vector: str, attacker: str, victim: str, n: int) -> None:
    try:
        await ATTEMPTS[vector](sweep, attacker, sweep.canaries[victim], n)
    except httpx.HTTPError as exc:
        sweep.outcome.record(vector, "error", f"{attacker} -> {victim}: {exc!r}")


@asynccontextmanager
async def open_sweep(stack: SweepStack) -> AsyncIterator[Sweep]:
    """A sweep of the stack with its canaries planted; its sockets and clients closed afterwards."""
    redis = redis_for(stack.redis_url)
    try:
        async with httpx.AsyncClient(timeout=ANSWER_TIMEOUT_S) as http:
            sweep = Sweep(stack, http, redis)
            try:
                await plant_canaries(sweep)
                yield sweep
            finally:
                for socket in [*sweep.desks.values(), *sweep.streams.values()]:
                    await socket.close()
    finally:
        await redis.aclose()


async def run_sweep(stack: SweepStack, attempts: int, concurrency: int = 16) -> Outcome:
    """Plant the canaries, make the attempts (`concurrency` at a time), check the canaries, close the sockets."""
    async with open_sweep(stack) as sweep:
        gate = asyncio.Semaphore(concurrency)

        async def one(n: int, vector: str, attacker: str, victim: str) -> None:
            async with gate:
                await _attempt(sweep, vector, attacker, victim, n)

        await asyncio.gather(*(one(n, *triple) for n, triple in enumerate(plan(stack.tenants, attempts))))
        await check_canaries(sweep)
    return sweep.outcome


async def isolation_sweep(stack: SweepStack, attempts: int = 10_000) -> FaultRow:
    """The isolation row of the fault table: `attempts` cross-tenant attempts; leaks and errors in `lost`."""
    started = time.monotonic()
    outcome = await run_sweep(stack, attempts)
    vectors = ", ".join(f"{v} {outcome.by_vector[v]}" for v in VECTORS if outcome.by_vector[v])
    note = (
        f"cross-tenant attempts with canaries ({vectors}); lost = leaks {len(outcome.leaks)} + "
        f"unexpected answers {len(outcome.errors)}; {time.monotonic() - started:.0f} s"
    )
    if outcome.leaks or outcome.errors:
        note += "; e.g. " + " | ".join([*outcome.leaks[:2], *outcome.errors[:2]])
    return FaultRow(
        fault="tenant isolation",
        injections=outcome.attempts,
        acked=outcome.refused,
        lost=len(outcome.leaks) + len(outcome.errors),
        duplicated=0,
        double_owned=0,
        over_capacity=0,
        reordered=0,
        recovery_s=None,
        note=note,
    )
