"""The lifecycle of a service process: HTTP (health, readiness, metrics), workers, graceful shutdown.

Every service starts the same way. Its `service` module has one `build(settings) -> ServiceRuntime` that starts
its clients and registers them here, and its `__main__` hands that to `run_service`:

    async def build(settings: ChatSettings) -> ServiceRuntime:
        runtime = ServiceRuntime(settings)
        producer = await runtime.start_producer()
        await runtime.add_consumer("chat-outbound", BatchConsumer(settings, ..., producer=producer))
        return runtime

    run_service(build, ChatSettings())          # switchboard/chat/__main__.py

In-process (tests), `async with runtime.serving():` serves until the block ends, then stops gracefully.
On SIGTERM or SIGINT: `/readyz` answers 503 at once, drains run (work moved away while everything still works,
e.g. the gateway's desks), then stop intake (every `stop` callback), give workers `shutdown_grace_s` to finish
in-flight work, cancel what is left, close clients in reverse order, exit 0.

With `SB_INTERNAL_PORT` the operator surface (`/metrics`, `/healthz`, `/readyz` and whatever a service mounts on
`internal_app`, such as presence's operator API) is a second app on that port, and the public port answers 404 for
it: an Ingress in front of the public port can never expose it. Unset, `internal_app` is the public app.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Generator
from typing import Any, TypeVar

import uvicorn
import uvloop
from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp

from switchboard.runtime.consumer import BatchConsumer
from switchboard.runtime.http_client import close_shared_session
from switchboard.runtime.http_timeouts import timed_http_protocol
from switchboard.runtime.kafka import RecordProducer
from switchboard.runtime.logs import configure_logging, get_logger
from switchboard.runtime.metrics import export_service
from switchboard.runtime.settings import ServiceSettings

log = get_logger(__name__)

ReadyCheck = Callable[[], bool]
Closer = Callable[[], Awaitable[None]]
Drain = Callable[[], Awaitable[None]]
S = TypeVar("S", bound=ServiceSettings)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the service runtime owns SIGTERM and SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class ServiceRuntime:
    """Runs one service: its HTTP app (and internal app), its workers, and an orderly shutdown."""

    def __init__(self, settings: ServiceSettings, app: FastAPI | None = None) -> None:
        self.settings = settings
        configure_logging(settings.service_name, settings.instance_id, settings.log_level)
        self.app = app or FastAPI(title=f"switchboard {settings.service_name}")
        # Health, readiness, metrics and operator APIs: the public app itself unless SB_INTERNAL_PORT is set.
        self.internal_app = (
            self.app
            if settings.internal_port is None
            else FastAPI(title=f"switchboard {settings.service_name} (internal)")
        )
        self._ready_checks: dict[str, ReadyCheck] = {}
        self._workers: list[tuple[str, Callable[[], Coroutine[Any, Any, None]]]] = []
        self._drains: list[Drain] = []
        self._stoppers: list[Callable[[], None]] = []
        # Closed in reverse order when the service stops: the process's HTTP client last.
        self._closers: list[Closer] = [close_shared_session]
        self.stopping = asyncio.Event()
        # What the public port serves: the app, or the app behind `front` (set_front).
        self._front: Callable[[ASGIApp], ASGIApp] | None = None
        # The bound ports once serving (the settings' ports may be 0: any free port).
        self.port: int | None = None
        self.internal_port: int | None = None
        self._install_health_routes()
        export_service(settings.service_name, self.is_ready)

    @property
    def internal_url(self) -> str:
        """http://host:port of the operator surface once serving (the public port without SB_INTERNAL_PORT)."""
        port = self.internal_port if self.internal_port is not None else self.port
        return f"http://{self.settings.http_host}:{port}"

    def _install_health_routes(self) -> None:
        @self.internal_app.get("/healthz", include_in_schema=False)
        async def healthz() -> dict[str, str]:
            return {"status": "alive", "service": self.settings.service_name}

        @self.internal_app.get("/readyz", include_in_schema=False)
        async def readyz(response: Response) -> dict[str, object]:
            ready, checks = self.readiness()
            response.status_code = 200 if ready else 503
            return {"ready": ready, "checks": checks}

        @self.internal_app.get("/metrics", include_in_schema=False)
        async def metrics() -> Response:
            return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    def readiness(self) -> tuple[bool, dict[str, bool]]:
        """What `/readyz` answers (and `sb_ready` shows): ready while every check passes and not stopping."""
        checks = {name: check() for name, check in self._ready_checks.items()}
        return all(checks.values()) and not self.stopping.is_set(), checks

    def is_ready(self) -> bool:
        """Whether `/readyz` would answer 200 now."""
        return self.readiness()[0]

    def set_front(self, front: Callable[[ASGIApp], ASGIApp]) -> None:
        """Serve the public port through `front(app)`: an ASGI layer outside the framework, for connections that
        need none of it (the gateway's desk sockets: each framework layer is a suspended frame per idle socket)."""
        self._front = front

    def add_ready_check(self, name: str, check: ReadyCheck) -> None:
        """`/readyz` answers 200 only while every check returns True."""
        self._ready_checks[name] = check

    def add_worker(
        self, name: str, run: Callable[[], Coroutine[Any, Any, None]], stop: Callable[[], None] | None = None
    ) -> None:
        """A long-running coroutine; `stop` asks it to stop taking new work."""
        self._workers.append((name, run))
        if stop is not None:
            self._stoppers.append(stop)

    def add_drain(self, drain: Drain) -> None:
        """Called first on shutdown, all drains at once, while `/readyz` already answers 503 and workers, clients
        and both ports still work: move work elsewhere gradually (the gateway closes its desks over a window). A
        drain bounds its own duration."""
        self._drains.append(drain)

    def add_stopper(self, stop: Callable[[], None]) -> None:
        """Called first on shutdown: stop intake (close a listener, stop reading a topic)."""
        self._stoppers.append(stop)

    def add_closer(self, close: Closer) -> None:
        """Called last on shutdown, in reverse order of registration (close clients)."""
        self._closers.append(close)

    async def start_producer(self) -> RecordProducer:
        """Start the service's Kafka producer and close it on shutdown."""
        producer = RecordProducer(self.settings)
        await producer.start()
        self.add_closer(producer.stop)
        return producer

    async def add_consumer(self, name: str, consumer: BatchConsumer, *, gates_readiness: bool = True) -> BatchConsumer:
        """Join the consumer's group now and run it as worker `name`, stopped and closed in order.

        `/readyz` follows the consumer's readiness unless `gates_readiness` is False (a consumer that feeds a
        view, not the service's work).
        """
        await consumer.start()
        self.add_closer(consumer.stop)
        if gates_readiness:
            self.add_ready_check(name, lambda: consumer.ready)
        self.add_worker(name, consumer.run, stop=consumer.stop_intake)
        return consumer

    @contextlib.asynccontextmanager
    async def serving(self, start_timeout_s: float = 30.0) -> AsyncIterator[ServiceRuntime]:
        """Serve on a task until the block ends (once listening, `self.port` is set), then shut down gracefully."""
        task = asyncio.create_task(self.serve(), name=f"{self.settings.service_name}-serve")
        try:
            async with asyncio.timeout(start_timeout_s):
                while self.port is None:
                    if task.done():
                        task.result()
                        raise RuntimeError("serve() returned before it listened")
                    await asyncio.sleep(0.02)
            yield self
        finally:
            self.request_stop()
            await task

    def request_stop(self) -> None:
        """Begin a graceful shutdown (what SIGTERM does)."""
        if not self.stopping.is_set():
            log.info("stopping", service=self.settings.service_name)
            self.stopping.set()

    def _server(self, app: ASGIApp, port: int) -> _Server:
        config = uvicorn.Config(
            app,
            host=self.settings.http_host,
            port=port,
            log_config=None,
            lifespan="off",
            # Header and body deadlines (uvicorn has none): a slow or silent client cannot hold a connection.
            http=timed_http_protocol(
                self.settings.service_name, self.settings.http_header_timeout_s, self.settings.http_body_timeout_s
            ),
            ws="websockets-sansio",
            ws_max_size=self.settings.http_ws_max_bytes,
            ws_per_message_deflate=self.settings.http_ws_deflate,
            timeout_graceful_shutdown=max(1, int(self.settings.shutdown_grace_s)),
        )
        return _Server(config)

    async def serve(self) -> None:
        """Serve until SIGTERM/SIGINT or `request_stop`, then shut down in order."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        public: ASGIApp = self.app if self._front is None else self._front(self.app)
        servers = [self._server(public, self.settings.http_port)]
        if self.settings.internal_port is not None:
            servers.append(self._server(self.internal_app, self.settings.internal_port))
        http_tasks = [asyncio.create_task(srv.serve(), name=f"http-{i}") for i, srv in enumerate(servers)]
        worker_tasks = [asyncio.create_task(run(), name=name) for name, run in self._workers]
        ports = [await self._wait_started(srv, task) for srv, task in zip(servers, http_tasks, strict=True)]
        self.port = ports[0]
        self.internal_port = ports[1] if len(ports) > 1 else None
        log.info(
            "serving",
            service=self.settings.service_name,
            port=self.port,
            internal_port=self.internal_port,
            workers=[name for name, _ in self._workers],
        )
        stop_task = asyncio.create_task(self.stopping.wait())
        try:
            await asyncio.wait([stop_task, *http_tasks, *worker_tasks], return_when=asyncio.FIRST_COMPLETED)
            failed = [t for t in [*http_tasks, *worker_tasks] if t.done() and not t.cancelled() and t.exception()]
            for task in failed:
                log.error("worker_failed", worker=task.get_name(), error=repr(task.exception()))
            self.request_stop()
            await self._shutdown(list(zip(servers, http_tasks, strict=True)), worker_tasks)
        finally:
            stop_task.cancel()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
        if failed:
            raise SystemExit(1)

    async def _wait_started(self, server: _Server, http_task: asyncio.Task[None]) -> int:
        """The port `server` listens on, once it does."""
        while not server.started:
            if http_task.done():
                http_task.result()
                raise RuntimeError("HTTP server exited before it started")
            await asyncio.sleep(0.01)
        sockets = [s for srv in server.servers for s in (srv.sockets or ())]
        port: int = sockets[0].getsockname()[1] if sockets else server.config.port
        return port

    async def _drain(self) -> None:
        """Run every drain at once; one that fails is logged, the shutdown goes on."""
        results = await asyncio.gather(*(drain() for drain in self._drains), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                log.warning("drain_failed", error=repr(result))

    async def _shutdown(
        self, servers: list[tuple[_Server, asyncio.Task[None]]], workers: list[asyncio.Task[None]]
    ) -> None:
        await self._drain()
        for stop in self._stoppers:
            stop()
        pending = [t for t in workers if not t.done()]
        if pending:
            _, still = await asyncio.wait(pending, timeout=self.settings.shutdown_grace_s)
            for task in still:
                log.warning("worker_cancelled", worker=task.get_name())
                task.cancel()
            await asyncio.gather(*still, return_exceptions=True)
        # The public port first; the internal one (probes, the last scrape) until the very end.
        for server, task in servers:
            server.should_exit = True
            await asyncio.gather(task, return_exceptions=True)
        for close in reversed(self._closers):
            try:
                await close()
            except Exception as exc:  # closing must go on for the other clients
                log.warning("close_failed", error=repr(exc))
        log.info("stopped", service=self.settings.service_name)


def run_service(build: Callable[[S], Awaitable[ServiceRuntime]], settings: S) -> None:
    """The process entry point of every service: build its runtime from `settings` and serve until SIGTERM.

    Every service runs on uvloop (installed with the services): it takes a good share off the per-event cost of the
    asyncio loop, which is most of an adapter's or the gateway's work per message.
    """

    async def main() -> None:
        runtime = await build(settings)
        await runtime.serve()

    uvloop.run(main())
