"""Running gateway replicas in the test process, and a small desktop client over real websockets."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Generator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI
from redis.asyncio import Redis
from starlette.types import ASGIApp, Receive, Scope, Send
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Origin

from switchboard.gateway.app import Gateway
from switchboard.gateway.service import assemble, workers
from switchboard.gateway.settings import GatewaySettings
from switchboard.gateway.tokens import issue_token
from switchboard.runtime.kafka import RecordProducer
from switchboard.runtime.redis_client import redis_client
from switchboard.runtime.settings import ServiceSettings
from switchboard.state.agents import PresenceStore
from switchboard.state.keys import Keys
from switchboard.state.roster import load_roster
from tests.helpers import eventually

SECRET = "test-secret-0123456789-0123456789"
ORIGIN = "http://desk.test"


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@dataclass
class RunningGateway:
    """One gateway replica serving on 127.0.0.1:port."""

    gateway: Gateway
    port: int
    url: str
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    # Exceptions the ASGI app raised to the server (uvicorn logs each as "Exception in ASGI application").
    app_errors: list[BaseException] = field(default_factory=list)


class _RaiseRecorder:
    """Wraps the ASGI app and records what it raises to the server (then raises it on, as before)."""

    def __init__(self, app: ASGIApp, errors: list[BaseException]) -> None:
        self.app = app
        self.errors = errors

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        except BaseException as exc:
            self.errors.append(exc)
            raise


def gateway_settings(settings: ServiceSettings, **overrides: Any) -> GatewaySettings:
    """GatewaySettings on the test's Kafka, Redis and prefixes."""
    values = {
        **settings.model_dump(),
        "service_name": "gateway",
        "jwt_secret": SECRET,
        "allowed_origins": [ORIGIN],
        "reconcile_interval_s": 1.0,
        **overrides,
    }
    return GatewaySettings(**values)


async def load_agents(settings: ServiceSettings, redis: Redis, producer: RecordProducer) -> None:
    """Put the dev roster into Redis as presence does at start."""
    store = PresenceStore(redis, Keys(settings.key_prefix), producer)
    await store.load_roster(load_roster())


async def roster_loaded(settings: ServiceSettings, redis: Redis) -> None:
    """`load_agents` with a producer of its own."""
    producer = RecordProducer(settings)
    await producer.start()
    try:
        await load_agents(settings, redis, producer)
    finally:
        await producer.stop()


@contextlib.asynccontextmanager
async def running_gateway(settings: GatewaySettings) -> AsyncIterator[RunningGateway]:
    """A replica with its own Redis client and producer; stopped (sockets closed) on exit."""
    redis = redis_client(settings)
    producer = RecordProducer(settings)
    await producer.start()
    gateway = assemble(settings, redis, producer)
    app = FastAPI()
    gateway.install(app)
    app_errors: list[BaseException] = []
    config = uvicorn.Config(
        _RaiseRecorder(gateway.asgi(app), app_errors),
        host="127.0.0.1",
        port=0,
        log_config=None,
        lifespan="off",
        ws="websockets-sansio",
        ws_ping_interval=None,
        ws_max_size=settings.http_ws_max_bytes,
        ws_per_message_deflate=settings.http_ws_deflate,
    )
    server = _Server(config)
    tasks = [asyncio.create_task(run()) for _, run in workers(gateway)]
    tasks.append(asyncio.create_task(server.serve()))
    try:

        async def started() -> bool:
            return server.started and gateway.hub.listening

        await eventually(started, 10, "gateway started")
        port = server.servers[0].sockets[0].getsockname()[1]
        yield RunningGateway(gateway, port, f"ws://127.0.0.1:{port}/desk", tasks, app_errors)
    finally:
        gateway.hub.stop()
        gateway.stop_sessions()
        server.should_exit = True
        await asyncio.wait(tasks, timeout=5)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await producer.stop()
        await redis.aclose()


def token(tenant: str, agent: str, ttl: int = 300, secret: str = SECRET, now: float | None = None) -> str:
    """A desk token as POST /login issues it."""
    return issue_token(secret, tenant, agent, ttl, now=now)


class Desk:
    """A desktop: one websocket client that authenticates, reads frames and sends commands."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.snapshot: dict[str, Any] = {}

    @classmethod
    async def open(
        cls,
        url: str,
        auth_token: str,
        resume_after: int | None = None,
        origin: str | None = ORIGIN,
        max_queue: int | None = 16,
        rcvbuf: int | None = None,
        compression: str | None = "deflate",
    ) -> Desk:
        """Connect, authenticate, and read the snapshot; `rcvbuf` shrinks the kernel's receive buffer (slow desk)."""
        sock = None
        if rcvbuf is not None:
            host, port = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
        ws = await connect(
            url, origin=Origin(origin) if origin else None, max_queue=max_queue, sock=sock, compression=compression
        )
        desk = cls(ws)
        hello: dict[str, Any] = {"type": "auth", "token": auth_token}
        if resume_after is not None:
            hello["resume_after"] = resume_after
        await ws.send(json.dumps(hello))
        desk.snapshot = await desk.frame()
        assert desk.snapshot["type"] == "snapshot", desk.snapshot
        return desk

    async def frame(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next frame."""
        async with asyncio.timeout(timeout):
            raw = await self.ws.recv()
        frame: dict[str, Any] = json.loads(raw)
        return frame

    async def events(self, count: int, timeout: float = 15.0, ack: bool = True) -> list[dict[str, Any]]:
        """The next `count` event frames (other frames are skipped), acking the last one."""
        found: list[dict[str, Any]] = []
        async with asyncio.timeout(timeout):
            while len(found) < count:
                frame = await self.frame(timeout)
                if frame["type"] == "event":
                    found.append(frame)
        if ack and found:
            await self.send({"type": "ack", "seq": found[-1]["seq"]})
        return found

    async def send(self, frame: dict[str, Any]) -> None:
        """Send one command frame."""
        await self.ws.send(json.dumps(frame))

    async def command(self, frame: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        """Send a command with an id and return its result or error frame."""
        await self.send(frame)
        async with asyncio.timeout(timeout):
            while True:
                answer = await self.frame(timeout)
                if answer["type"] in ("result", "error") and answer.get("id") == frame.get("id"):
                    return answer

    async def close_code(self, timeout: float = 10.0) -> int | None:
        """Read until the server closes; the close code it sent."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    await self.ws.recv()
        except ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd else None

    async def close(self) -> None:
        """Close from the desktop's side."""
        await self.ws.close()
