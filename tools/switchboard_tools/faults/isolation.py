"""The tenant-isolation sweep: one shop's credentials aimed at another shop's data, across every endpoint, with
canary data planted in each shop first.

Every shop of the stack gets a canary: a chat conversation (signed webhook) whose customer and text carry a
marker unique to that shop, and a phone call started on its own hotline. Then each attempt takes an attacker shop A
and a victim shop B and uses what A legitimately holds against B:

| vector | attempt | refused with |
|---|---|---|
| `chat_webhook` | B's webhook, body signed with A's secret | 401 |
| `chat_widget` | B's widget socket for B's canary customer, token signed with A's secret | close 4401, no frame |
| `gateway_login` | `/login` as B (B's agent with A's agent's password; A's agent under B) | 401 |
| `desk_command` | A's desk: `context`, `accept`, `reply`, `close`, `transfer` of B's canary conversation | `error` |
| `phone_start` | A's API key starts a call on B's hotline | 403 `wrong_tenant` |
| `phone_segment` | A's API key adds a segment to B's canary call | 404 `unknown_call` |
| `operator_api` | presence's operator API and the board of B with A's chat secret as the bearer | 401 |

A leak is an attempt that was not refused (a 2xx, a `result` frame, a socket that stayed open and sent a frame), or
any answer to A that holds another shop's marker. Anything else that is no refusal (a 5xx, an unexpected status)
counts as an error. Both go into the row's loss column (`lost`), broken down in `note`; zero is the goal.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlencode

import httpx
import yaml
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from switchboard.chat.signing import widget_token
from switchboard.runtime.signing import signed_headers
from switchboard_tools.faults.table import FaultRow

VECTORS = (
    "chat_webhook",
    "chat_widget",
    "gateway_login",
    "desk_command",
    "phone_start",
    "phone_segment",
    "operator_api",
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


class SweepCredentials(Protocol):
    """The per-shop secrets of the stack (loadgen.fixtures.Credentials)."""

    def agent_password(self, tenant_id: str, agent_id: str) -> str: ...
    def chat_secret(self, tenant_id: str) -> str: ...
    def phone_key(self, tenant_id: str) -> str: ...


class SweepStack(Protocol):
    """What the sweep needs of a running stack (faults.stack.FaultStack has it)."""

    @property
    def urls(self) -> dict[str, str]: ...

    tenants: list[str]
    agents: dict[str, list[str]]
    creds: Any
    config_env: dict[str, str]


@dataclass
class Canary:
    """What a shop holds that no other shop may reach."""

    tenant_id: str
    marker: str
    customer_id: str
    conversation_id: str
    call_id: str
    hotline: str


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
    """One run: the stack, its canaries, an HTTP client and one desk socket per attacking shop."""

    stack: SweepStack
    http: httpx.AsyncClient
    canaries: dict[str, Canary] = field(default_factory=dict)
    outcome: Outcome = field(default_factory=Outcome)
    desks: dict[str, ClientConnection] = field(default_factory=dict)
    desk_locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    # When each attacking desk may send its next command (DESK_COMMANDS_PER_S).
    desk_next: dict[str, float] = field(default_factory=dict)

    @property
    def creds(self) -> SweepCredentials:
        creds: SweepCredentials = self.stack.creds
        return creds

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


async def plant_canaries(sweep: Sweep) -> None:
    """A chat conversation and a phone call per shop, each marked with the shop's own marker."""
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
        sweep.canaries[tenant] = Canary(tenant, marker, customer, conversation, call_id, hotline)


def _call_started(call_id: str, hotline: str) -> dict[str, Any]:
    return {"type": "call.started", "call_id": call_id, "caller": "13800000000", "dialled_number": hotline}


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


async def _answer_to(desk: ClientConnection, command_id: str) -> dict[str, Any]:
    """The result or error frame answering `command_id` (events and stats frames in between are skipped)."""
    async with asyncio.timeout(ANSWER_TIMEOUT_S):
        while True:
            frame = json.loads(await desk.recv())
            if frame.get("id") == command_id and frame.get("type") in ("result", "error"):
                return dict(frame)


async def phone_start(sweep: Sweep, attacker: str, victim: Canary, n: int) -> None:
    if not victim.hotline:
        return
    resp = await _phone(sweep, attacker, [_call_started(f"iso-{n}-{uuid.uuid4().hex[:8]}", victim.hotline)])
    _judge_http(sweep, "phone_start", attacker, resp, 403, f"{attacker} key -> call on {victim.tenant_id}'s hotline")


async def phone_segment(sweep: Sweep, attacker: str, victim: Canary, n: int) -> None:
    if not victim.hotline:
        return
    segment = {"type": "segment", "call_id": victim.call_id, "seq": n + 1, "speaker": "customer"}
    segment |= {"text": "let me in", "start_ms": 0, "end_ms": 10, "confidence": 0.9, "final": True}
    resp = await _phone(sweep, attacker, [segment])
    _judge_http(sweep, "phone_segment", attacker, resp, 404, f"{attacker} key -> {victim.tenant_id}'s call")


async def operator_api(sweep: Sweep, attacker: str, victim: Canary, n: int) -> None:
    bearer = {"Authorization": f"Bearer {sweep.creds.chat_secret(attacker)}"}
    if n % 2:
        url = f"{sweep.url('presence')}/v1/operator/tenants/{victim.tenant_id}/agents"
    else:
        url = f"{sweep.url('gateway')}/v1/board/tenants/{victim.tenant_id}/conversations/{victim.conversation_id}"
    resp = await sweep.http.get(url, headers=bearer)
    _judge_http(sweep, "operator_api", attacker, resp, 401, f"{attacker} secret -> {url}")


ATTEMPTS: dict[str, Callable[[Sweep, str, Canary, int], Awaitable[None]]] = {
    "chat_webhook": chat_webhook,
    "chat_widget": chat_widget,
    "gateway_login": gateway_login,
    "desk_command": desk_command,
    "phone_start": phone_start,
    "phone_segment": phone_segment,
    "operator_api": operator_api,
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


async def run_sweep(stack: SweepStack, attempts: int, concurrency: int = 16) -> Outcome:
    """Plant the canaries, make the attempts (`concurrency` at a time), close the desk sockets."""
    async with httpx.AsyncClient(timeout=ANSWER_TIMEOUT_S) as http:
        sweep = Sweep(stack, http)
        await plant_canaries(sweep)
        gate = asyncio.Semaphore(concurrency)

        async def one(n: int, vector: str, attacker: str, victim: str) -> None:
            async with gate:
                await _attempt(sweep, vector, attacker, victim, n)

        try:
            await asyncio.gather(*(one(n, *triple) for n, triple in enumerate(plan(stack.tenants, attempts))))
        finally:
            for desk in sweep.desks.values():
                await desk.close()
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
