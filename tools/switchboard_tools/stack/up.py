"""`switchboard up`: Kafka, Redis, topics and every service, in the foreground, until Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from switchboard.runtime.kafka import ensure_topics
from switchboard.runtime.topics import Topics
from switchboard_tools.stack.kafka import ROOT, LocalKafka
from switchboard_tools.stack.procs import free_port, port_open, spawn, terminate
from switchboard_tools.stack.redis import LocalRedis

# Every service of switchboard, in start order; those not built yet are skipped.
SERVICES = ("presence", "router", "gateway", "chat", "email", "phone", "loadgen")
# Services that are tools rather than long-running processes are not started by `up`.
NOT_STARTED_BY_UP = {"loadgen"}
# The tools live in the tools distribution; every other service is the package `switchboard.<name>`.
TOOL_MODULES = {"loadgen": "switchboard_tools.loadgen"}


def module_of(name: str) -> str:
    """The module a service runs as (`python -m <module>`, the image's command)."""
    return TOOL_MODULES.get(name, f"switchboard.{name}")


def existing_services() -> list[str]:
    """Services that have an entry point (`python -m <module_of(name)>`)."""
    return [name for name in SERVICES if _has_entry_point(name)]


def _has_entry_point(name: str) -> bool:
    try:
        return importlib.util.find_spec(f"{module_of(name)}.__main__") is not None
    except ModuleNotFoundError:  # the service package does not exist yet
        return False


@dataclass
class RunningService:
    """A service process started by `up`."""

    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    def ready(self) -> bool:
        """True when its /readyz answers 200."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=1) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False


@dataclass
class Infrastructure:
    """Where Kafka and Redis answer, and the pids of those started here (none when given by the environment)."""

    bootstrap: str
    redis_url: str
    pids: dict[str, int]


@contextlib.contextmanager
def infrastructure(run_dir: Path) -> Iterator[Infrastructure]:
    """Kafka and Redis: the ones in KAFKA_BOOTSTRAP / REDIS_URL, or local processes started here."""
    kafka = redis = None
    pids: dict[str, int] = {}
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP")
    redis_url = os.environ.get("REDIS_URL")
    try:
        if not bootstrap:
            kafka = LocalKafka(run_dir / "kafka", port=9092 if not port_open(9092) else free_port())
            kafka.start()
            bootstrap = kafka.bootstrap
            pids["kafka"] = kafka.proc.pid if kafka.proc else 0
        if not redis_url:
            redis = LocalRedis(run_dir / "redis", port=6379 if not port_open(6379) else free_port())
            redis.start()
            redis_url = redis.url
            pids["redis"] = redis.proc.pid if redis.proc else 0
        yield Infrastructure(bootstrap, redis_url, pids)
    finally:
        if redis is not None:
            redis.stop()
        if kafka is not None:
            kafka.stop()


def start_order_service(run_dir: Path, orders_file: Path | None = None) -> RunningService:
    """switchboard's own order service (docs/order-lookup.md, docs/customer-lookup.md) over the dev shops' sample
    orders and customers, or `orders_file` (`SB_ORDERS_FILE`): the shops' order system for the bot's lookups and
    their customer system for the adapters' tier lookups, in the local stack and the load test."""
    port = free_port()
    env = {**os.environ, "SB_HTTP_PORT": str(port)}
    if orders_file is not None:
        env["SB_ORDERS_FILE"] = str(orders_file)
    log = run_dir / "logs" / "orders.log"
    proc = spawn([sys.executable, "-m", "switchboard_tools.orders", "--host", "127.0.0.1"], log, env=env)
    return RunningService("orders", port, proc, log)


def start_services(
    names: list[str],
    bootstrap: str,
    redis_url: str,
    run_dir: Path,
    supervisors: dict[str, str] | None = None,
    extra_env: dict[str, str] | None = None,
) -> list[RunningService]:
    """Start each service as `python -m switchboard.<name>` on a port of its own (the gateway learns presence's
    address, for the board's surge controls, and both share the run's supervisor tokens); `extra_env` goes to
    every one (e.g. SB_ORDER_LOOKUP_URL)."""
    ports = {name: free_port() for name in names}
    running = []
    for name in names:
        env = {
            **os.environ,
            **(extra_env or {}),
            "KAFKA_BOOTSTRAP": bootstrap,
            "REDIS_URL": redis_url,
            "SB_HTTP_PORT": str(ports[name]),
            "SB_SERVICE_NAME": name,
            **_supervisor_env(name, ports, supervisors or {}),
        }
        log = run_dir / "logs" / f"{name}.log"
        proc = spawn([sys.executable, "-m", module_of(name)], log, env=env)
        running.append(RunningService(name, ports[name], proc, log))
    return running


def dev_supervisor_tokens() -> dict[str, str]:
    """One supervisor token per shop of the dev roster, made anew for each run of `up` (printed when it is up);
    none when SB_OPERATOR_TOKENS is set (those are used instead)."""
    if "SB_OPERATOR_TOKENS" in os.environ:
        return {}
    return {tenant: secrets.token_urlsafe(18) for tenant in ("shop-a", "shop-b")}


def _supervisor_env(name: str, ports: dict[str, int], supervisors: dict[str, str]) -> dict[str, str]:
    """Presence and the gateway share the supervisors' SB_OPERATOR_TOKENS; the gateway gets SB_PRESENCE_URL."""
    env: dict[str, str] = {}
    if name in ("presence", "gateway") and supervisors:
        grants = [{"name": f"supervisor-{t}", "token": tok, "tenants": [t]} for t, tok in supervisors.items()]
        env["SB_OPERATOR_TOKENS"] = json.dumps(grants)
    if name == "gateway" and "presence" in ports:
        env["SB_PRESENCE_URL"] = f"http://127.0.0.1:{ports['presence']}"
    return env


def wait_ready(services: list[RunningService], timeout: float) -> None:
    """Wait until every service answers /readyz, or raise naming those that do not."""
    deadline = time.monotonic() + timeout
    pending = list(services)
    while pending and time.monotonic() < deadline:
        for svc in list(pending):
            if svc.proc.poll() is not None:
                raise RuntimeError(f"{svc.name} exited with {svc.proc.returncode}; see {svc.log}")
            if svc.ready():
                pending.remove(svc)
        time.sleep(0.3)
    if pending:
        raise TimeoutError(f"not ready after {timeout:.0f}s: {', '.join(s.name for s in pending)}")


def write_endpoints(run_dir: Path, infra: Infrastructure, services: list[RunningService]) -> Path:
    """Record where everything listens (and its pid) in `<run_dir>/endpoints.json` for tools and tests."""
    path = run_dir / "endpoints.json"
    path.write_text(
        json.dumps(
            {
                "kafka_bootstrap": infra.bootstrap,
                "redis_url": infra.redis_url,
                "infrastructure_pids": infra.pids,
                "services": {
                    s.name: {"http": f"http://127.0.0.1:{s.port}", "port": s.port, "pid": s.proc.pid} for s in services
                },
            },
            indent=2,
        )
    )
    return path


def up(run_dir: Path | None = None, ready_timeout: float = 90.0) -> int:
    """Run the whole stack in the foreground; Ctrl-C (or SIGTERM) stops everything and returns 0."""
    run_dir = run_dir or Path(os.environ.get("SB_RUN_DIR", ROOT / ".run" / "stack"))
    stop = _stop_signal()
    started = time.monotonic()
    services: list[RunningService] = []
    with infrastructure(run_dir) as infra:
        bootstrap, redis_url = infra.bootstrap, infra.redis_url
        try:
            asyncio.run(ensure_topics(bootstrap, Topics(os.environ.get("SB_TOPIC_PREFIX", "")).specs()))
            supervisors = dev_supervisor_tokens()
            names = [n for n in existing_services() if n not in NOT_STARTED_BY_UP]
            extra: dict[str, str] = {}
            if not os.environ.get("SB_ORDER_LOOKUP_URL"):
                services.append(start_order_service(run_dir))
                extra["SB_ORDER_LOOKUP_URL"] = f"http://127.0.0.1:{services[-1].port}"
                # The same dev service answers the e-mail and phone adapters' customer (tier) lookups.
                if not os.environ.get("SB_CUSTOMER_LOOKUP_URL"):
                    extra["SB_CUSTOMER_LOOKUP_URL"] = extra["SB_ORDER_LOOKUP_URL"]
            services += start_services(names, bootstrap, redis_url, run_dir, supervisors, extra)
            wait_ready(services, ready_timeout)
            write_endpoints(run_dir, infra, services)
            _print_table(bootstrap, redis_url, services, time.monotonic() - started, run_dir, supervisors)
            while not stop.is_set() and all(s.proc.poll() is None for s in services):
                stop.wait(0.5)
            for svc in services:
                if svc.proc.poll() is not None and not stop.is_set():
                    print(f"{svc.name} exited with {svc.proc.returncode}; see {svc.log}", file=sys.stderr)
        finally:
            for svc in reversed(services):
                terminate(svc.proc)
            print("switchboard stopped", flush=True)
    return 0


def _stop_signal() -> _Flag:
    flag = _Flag()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: flag.set())
    return flag


class _Flag:
    """A stop flag set from a signal handler.

    A plain attribute and short sleeps, not threading.Event: Event.set() takes a lock that Event.wait() holds, so a
    second Ctrl-C arriving while the first is handled would deadlock the stack in its own signal handler.
    """

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        """Mark the stop (safe inside a signal handler)."""
        self._set = True

    def is_set(self) -> bool:
        """True once a stop was asked."""
        return self._set

    def wait(self, timeout: float) -> None:
        """Sleep up to `timeout`, returning early when the stop is asked."""
        deadline = time.monotonic() + timeout
        while not self._set and time.monotonic() < deadline:
            time.sleep(0.05)


def _print_table(
    bootstrap: str,
    redis_url: str,
    services: list[RunningService],
    took: float,
    run_dir: Path,
    supervisors: dict[str, str],
) -> None:
    lines = [
        f"switchboard is up in {took:.1f}s (Ctrl-C stops everything)",
        f"  kafka      {bootstrap}",
        f"  redis      {redis_url}",
    ]
    lines += [f"  {s.name:<10} http://127.0.0.1:{s.port}  (/healthz /readyz /metrics)" for s in services]
    gateway = next((s for s in services if s.name == "gateway"), None)
    if gateway is not None:
        lines.append(f"  desk       http://127.0.0.1:{gateway.port}/desk/   (shop-a / a-lina / dev-lina)")
        lines.append(f"  board      http://127.0.0.1:{gateway.port}/board/")
        lines += [f"             supervisor token of {t}: {tok}" for t, tok in supervisors.items()]
    if any(s.name == "chat" for s in services):
        lines.append(
            "  widget     switchboard widget-url --tenant shop-a --customer buyer-1 [--claim member_tier=88VIP]"
        )
    lines.append(f"  logs       {run_dir / 'logs'}")
    print("\n".join(lines), flush=True)
