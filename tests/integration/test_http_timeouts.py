"""Header and body deadlines on every service's HTTP server (runtime/http_timeouts.py): slowloris clients, silent
connections and stalled bodies are answered 408 and closed within the deadline, while normal requests and
websockets (which outlive it) are untouched. The last test runs each of the six services as its own process with
short deadlines (SB_HTTP_HEADER_TIMEOUT_S, SB_HTTP_BODY_TIMEOUT_S) and holds slow connections on every listener:
each public port and the internal ports (SB_INTERNAL_PORT) of presence and e-mail."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import Request

from switchboard.runtime.service import ServiceRuntime
from switchboard.runtime.settings import ServiceSettings
from switchboard_tools.stack.procs import free_port
from tests.conftest import _delete_topics, topic_settings
from tests.helpers import service_env, start_service, stop_service
from tests.integration.chat_service import chat_settings, connect, next_frame, running_chat, signed

DEADLINE_S = 2.0
# A loaded CI machine schedules late: closed within the deadline plus this counts as on time.
SLACK_S = 1.5


def _runtime() -> ServiceRuntime:
    settings = ServiceSettings(
        service_name="timeouts",
        http_host="127.0.0.1",
        http_port=0,
        http_header_timeout_s=DEADLINE_S,
        http_body_timeout_s=DEADLINE_S,
    )
    runtime = ServiceRuntime(settings)

    @runtime.app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    return runtime


async def _held(port: int, first: bytes, trickle: bytes | None, every_s: float = 0.2) -> tuple[float, bytes]:
    """Send `first`, then `trickle` every `every_s` until the server closes; (seconds held, what it answered)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    answer = b""
    try:
        writer.write(first)
        async with asyncio.timeout(DEADLINE_S + 10):
            while True:
                try:
                    chunk = await asyncio.wait_for(reader.read(4096), every_s)
                except TimeoutError:
                    if trickle is not None:
                        writer.write(trickle)
                    continue
                if not chunk:
                    return time.monotonic() - started, answer
                answer += chunk
    finally:
        writer.close()


def _status(answer: bytes) -> bytes:
    return answer.split(b"\r\n", 1)[0]


async def test_slowloris_silent_and_stalled_body_connections_are_closed_within_the_deadline() -> None:
    runtime = _runtime()
    async with runtime.serving():
        port = runtime.port
        assert port is not None
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            slowloris = [_held(port, b"POST /echo HTTP/1.1\r\nHost: x\r\n", b"X-Slow: a\r\n") for _ in range(200)]
            silent = [_held(port, b"", None) for _ in range(50)]
            stalled_body = [
                _held(port, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789", b"")
                for _ in range(50)
            ]
            held = asyncio.gather(*slowloris, *silent, *stalled_body)
            await asyncio.sleep(DEADLINE_S / 2)
            # The server keeps serving everyone else meanwhile.
            answer = await http.post("/echo", content=b"x" * 1000)
            assert answer.status_code == 200 and answer.json() == {"bytes": 1000}
            results = await held
    slowest = max(seconds for seconds, _ in results)
    print(f"300 slow connections: all closed, the slowest after {slowest:.2f} s (deadline {DEADLINE_S} s)")
    assert slowest < DEADLINE_S + SLACK_S
    assert {_status(answer) for _, answer in results} == {b"HTTP/1.1 408 Request Timeout"}


async def test_a_slow_request_on_a_kept_alive_connection_is_closed_too() -> None:
    runtime = _runtime()
    async with runtime.serving():
        port = runtime.port
        assert port is not None
        fast = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"
        seconds, answer = await _held(port, fast + b"POST /echo HTTP/1.1\r\n", b"X-Slow: a\r\n")
    assert answer.startswith(b"HTTP/1.1 200 OK")
    assert b"HTTP/1.1 408 Request Timeout" in answer
    assert seconds < DEADLINE_S + SLACK_S


@pytest.mark.broker
async def test_chat_webhook_refuses_slowloris_while_widget_sockets_outlive_the_deadline(
    settings: ServiceSettings,
) -> None:
    chat = chat_settings(settings, http_header_timeout_s=DEADLINE_S, http_body_timeout_s=DEADLINE_S)
    async with running_chat(chat) as running:
        port = running.runtime.port
        assert port is not None
        head = b"POST /chat/v1/webhook/shop-a HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        held = asyncio.gather(*(_held(port, head, b"X-Slow: a\r\n") for _ in range(300)))
        async with connect(running.ws_url("shop-a", "cust-timeouts")) as ws:
            await next_frame(ws, "hello")
            await asyncio.sleep(DEADLINE_S + 1.0)
            await ws.send(json.dumps({"type": "ping"}))
            await next_frame(ws, "pong")
        raw, headers = signed("shop-a", b"{", int(time.time()))
        async with httpx.AsyncClient(base_url=running.base) as http:
            # The webhook still answers others (a body that is no JSON: a 4xx, not a hang).
            answer = await http.post("/chat/v1/webhook/shop-a", content=raw, headers=headers)
            assert 400 <= answer.status_code < 500
        results = await held
    slowest = max(seconds for seconds, _ in results)
    print(f"chat webhook, 300 slowloris connections: all closed, the slowest after {slowest:.2f} s")
    assert slowest < DEADLINE_S + SLACK_S
    assert {_status(answer) for _, answer in results} == {b"HTTP/1.1 408 Request Timeout"}


REPO = Path(__file__).resolve().parents[2]
CHAT_SECRET = "timeouts-chat-secret"


@dataclass(frozen=True)
class Listener:
    """One HTTP listener of a service process, and a request whose body its app reads before answering (408 when
    the body stalls), or None where no route reads a body: a stalled body is answered at once there (404, a probe's
    200) and the connection closed at the body deadline (runtime/http_timeouts.py)."""

    service: str
    internal: bool
    body_read_by: bytes | None

    @property
    def name(self) -> str:
        return f"{self.service}-{'internal' if self.internal else 'public'}"


LISTENERS = [
    Listener(
        "chat",
        False,
        b"POST /chat/v1/webhook/shop-a HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n",
    ),
    Listener("email", False, b"POST /v1/email/inbound/shop-a HTTP/1.1\r\nHost: x\r\nContent-Type: message/rfc822\r\n"),
    Listener("email", True, None),
    Listener(
        "phone",
        False,
        b"POST /v1/phone/events HTTP/1.1\r\nHost: x\r\nX-Api-Key: dev-phone-shop-a\r\n"
        b"Content-Type: application/json\r\n",
    ),
    Listener("gateway", False, b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"),
    # With an internal port the public one serves presence nothing (404); the operator API is internal.
    Listener("presence", False, None),
    Listener(
        "presence",
        True,
        b"POST /v1/operator/tenants/shop-a/capacity HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n",
    ),
    # The router's health port: probes and metrics only.
    Listener("router", False, None),
]


def _service_envs(settings: ServiceSettings) -> dict[str, tuple[dict[str, str], dict[bool, int]]]:
    """Each service's environment (short deadlines) and its ports, public (False) and internal (True)."""
    deadlines = {
        "SB_HTTP_HEADER_TIMEOUT_S": str(DEADLINE_S),
        "SB_HTTP_BODY_TIMEOUT_S": str(DEADLINE_S),
        "SB_LOG_LEVEL": "WARNING",
        "SB_SHUTDOWN_GRACE_S": "2",
    }
    extra: dict[str, dict[str, str]] = {
        "chat": {"SB_CHAT_TENANT_SECRETS": json.dumps({"shop-a": CHAT_SECRET})},
        "email": {"SB_SMTP_HOST": "127.0.0.1", "SB_SMTP_PORT": str(free_port())},
        "phone": {},
        "gateway": {"SB_JWT_SECRET": "timeouts-test-secret-0123456789abcdef"},
        "presence": {"SB_OPERATOR_TOKENS": json.dumps([{"name": "ops", "token": "ops-0123456789abcdef"}])},
        "router": {"SB_ROUTING_CONFIG_DIR": str(REPO / "config" / "routing"), "SB_INSTANCE_ID": "router-timeouts"},
    }
    envs = {}
    for service, own in extra.items():
        ports = {False: free_port()}
        if any(listener.service == service and listener.internal for listener in LISTENERS):
            ports[True] = free_port()
        internal = {"SB_INTERNAL_PORT": str(ports[True])} if True in ports else {}
        env = service_env(settings, ports[False], SB_SERVICE_NAME=service, **deadlines, **own, **internal)
        envs[service] = (env, ports)
    return envs


@pytest.fixture(scope="module")
async def service_ports(kafka_bootstrap: str, redis_url: str) -> AsyncIterator[dict[str, int]]:
    """The six services as processes on the module's own topics and keys; listener name → port."""
    prefix = f"t{uuid.uuid4().hex[:10]}."
    settings = await topic_settings(kafka_bootstrap, redis_url, prefix, service_name="test")
    envs = _service_envs(settings)
    # Started side by side: the start-up is most of this module's time.
    started = await asyncio.gather(
        *(start_service(f"switchboard.{name}", env, timeout=120) for name, (env, _) in envs.items()),
        return_exceptions=True,
    )
    try:
        for result in started:
            if isinstance(result, BaseException):
                raise result
        yield {
            f"{name}-{'internal' if internal else 'public'}": port
            for name, (_, ports) in envs.items()
            for internal, port in ports.items()
        }
    finally:
        for result in started:
            if isinstance(result, tuple):
                await stop_service(result[0])
        await _delete_topics(kafka_bootstrap, prefix)


@pytest.mark.broker
@pytest.mark.parametrize("listener", LISTENERS, ids=lambda listener: listener.name)
async def test_every_service_listener_closes_slow_headers_and_bodies_within_the_deadline(
    listener: Listener, service_ports: dict[str, int]
) -> None:
    port = service_ports[listener.name]
    head = listener.body_read_by or b"POST /timeouts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    slowloris = [_held(port, head, b"X-Slow: a\r\n") for _ in range(3)]
    stalled = [_held(port, head + b"Content-Length: 100\r\n\r\n0123456789", b"") for _ in range(3)]
    results = await asyncio.gather(*slowloris, *stalled)
    slowest = max(seconds for seconds, _ in results)
    print(f"{listener.name}: 6 slow connections closed, the slowest after {slowest:.2f} s")
    assert slowest < DEADLINE_S + SLACK_S, results
    headers, bodies = results[:3], results[3:]
    assert {_status(answer) for _, answer in headers} == {b"HTTP/1.1 408 Request Timeout"}, headers
    if listener.body_read_by is not None:
        assert {_status(answer) for _, answer in bodies} == {b"HTTP/1.1 408 Request Timeout"}, bodies
    else:
        # Answered before the body came (nothing there reads it), then closed at the body deadline all the same.
        assert all(answer.startswith(b"HTTP/1.1 ") and b" 408 " not in answer for _, answer in bodies), bodies
        assert min(seconds for seconds, _ in bodies) > DEADLINE_S - 0.5, bodies
