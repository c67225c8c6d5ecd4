"""Header and body deadlines on every service's HTTP server (runtime/http_timeouts.py): slowloris clients, silent
connections and stalled bodies are answered 408 and closed within the deadline, while normal requests and
websockets (which outlive it) are untouched."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from fastapi import Request

from switchboard.runtime.service import ServiceRuntime
from switchboard.runtime.settings import ServiceSettings
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
