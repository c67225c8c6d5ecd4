"""`switchboard up`: Kafka, Redis, topics and every service, in the foreground, until Ctrl-C.

Everything listens on loopback (127.0.0.1) unless SB_UP_BIND names another address (e.g. 0.0.0.0): then the
services' HTTP ports and the e-mail adapter's SMTP port listen there, while Kafka and Redis stay on loopback. Several
stacks run side by side: each takes free ports and a run directory of its own (SB_RUN_DIR, else the first of
.run/stack, .run/stack-2, ... that no running stack holds), with a Kafka broker and a Redis server of its own.
Once every service is ready, `up` prints where the desk, the board, SMTP and the operator API answer, and the dev
credentials: the roster's agent logins, a supervisor token per shop and an operator token for every shop (both
made anew for each run unless SB_OPERATOR_TOKENS is set).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO

from switchboard.runtime.kafka import ensure_topics
from switchboard.runtime.topics import Topics
from switchboard.state.roster import load_roster
from switchboard_tools.stack.kafka import ROOT, LocalKafka
from switchboard_tools.stack.procs import free_port, port_open, spawn, terminate
from switchboard_tools.stack.redis import LocalRedis

# Every service of switchboard, in start order; those not built yet are skipped.
SERVICES = ("presence", "router", "gateway", "chat", "email", "phone", "loadgen")
# Services that are tools rather than long-running processes are not started by `up`.
NOT_STARTED_BY_UP = {"loadgen"}
# The tools live in the tools distribution; every other service is the package `switchboard.<name>`.
TOOL_MODULES = {"loadgen": "switchboard_tools.loadgen"}
# The address the stack's HTTP and SMTP ports listen on; loopback unless this says otherwise.
BIND_ENV = "SB_UP_BIND"
LOOPBACK = "127.0.0.1"
# The e-mail adapter's usual SMTP port, taken when free (a second stack gets a free one).
SMTP_PORT = 2525
# How many run directories (.run/stack, .run/stack-2, ...) `up` tries before it gives up.
MAX_STACKS = 9


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
    # Where it is reached (its listening address, or loopback when it listens on every address).
    host: str = LOOPBACK

    @property
    def url(self) -> str:
        """Its HTTP base URL."""
        return f"http://{self.host}:{self.port}"

    def ready(self) -> bool:
        """True when its /readyz answers 200."""
        try:
            with urllib.request.urlopen(f"{self.url}/readyz", timeout=1) as resp:
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
    their customer system for the adapters' tier lookups, in the local stack and the load test. Only the services
    call it, so it always listens on loopback."""
    port = free_port()
    env = {**os.environ, "SB_HTTP_PORT": str(port)}
    if orders_file is not None:
        env["SB_ORDERS_FILE"] = str(orders_file)
    log = run_dir / "logs" / "orders.log"
    proc = spawn([sys.executable, "-m", "switchboard_tools.orders", "--host", LOOPBACK], log, env=env)
    return RunningService("orders", port, proc, log)


def bind_address() -> str:
    """Where the stack's HTTP and SMTP ports listen: SB_UP_BIND, else loopback."""
    return os.environ.get(BIND_ENV, "").strip() or LOOPBACK


def reach_address(bind: str) -> str:
    """The address to reach a port listening on `bind` from this machine."""
    return LOOPBACK if bind in ("0.0.0.0", "::", "") else bind


@contextlib.contextmanager
def claimed_run_dir(given: Path | None = None, base: Path = ROOT / ".run") -> Iterator[Path]:
    """This stack's run directory, held until the stack stops: `given` (or SB_RUN_DIR), else the first of
    <base>/stack, <base>/stack-2, ... that no running `up` holds. The hold is a lock on `<dir>/up.lock`, so a stack
    that crashed holds nothing. RuntimeError when the given one, or every one, is held."""
    explicit = given or (Path(os.environ["SB_RUN_DIR"]) if os.environ.get("SB_RUN_DIR") else None)
    names = ["stack", *(f"stack-{i}" for i in range(2, MAX_STACKS + 1))]
    for run_dir in [explicit] if explicit else [base / name for name in names]:
        lock = _hold(run_dir)
        if lock is not None:
            try:
                yield run_dir
            finally:
                lock.close()
            return
    if explicit:
        raise RuntimeError(f"another `switchboard up` runs in {explicit}; set SB_RUN_DIR to another directory")
    raise RuntimeError(f"{MAX_STACKS} stacks run already ({base}/stack*); stop one or set SB_RUN_DIR")


def _hold(run_dir: Path) -> IO[str] | None:
    """The open, locked `<run_dir>/up.lock` (our pid in it), or None when another process holds it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = (run_dir / "up.lock").open("a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        return None
    lock.truncate(0)
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    return lock


def start_services(
    names: list[str],
    bootstrap: str,
    redis_url: str,
    run_dir: Path,
    supervisors: dict[str, str] | None = None,
    extra_env: dict[str, str] | None = None,
    host: str = LOOPBACK,
) -> list[RunningService]:
    """Start each service as `python -m switchboard.<name>` on a port of its own (the gateway learns presence's
    address, for the board's surge controls, and both share the run's supervisor tokens); `extra_env` goes to
    every one (e.g. SB_ORDER_LOOKUP_URL, SB_HTTP_HOST). `host` is where they are reached."""
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
            **_supervisor_env(name, ports, supervisors or {}, host),
            **_email_env(name),
        }
        log = run_dir / "logs" / f"{name}.log"
        proc = spawn([sys.executable, "-m", module_of(name)], log, env=env)
        running.append(RunningService(name, ports[name], proc, log, host))
    return running


def _email_env(name: str) -> dict[str, str]:
    """The e-mail adapter's shops for its metrics' tenant label (SB_EMAIL_TENANTS): the shops with a routing config
    (SB_ROUTING_CONFIG_DIR, else config/routing), unless the environment names them."""
    if name != "email" or "SB_EMAIL_TENANTS" in os.environ:
        return {}
    routing = Path(os.environ.get("SB_ROUTING_CONFIG_DIR") or ROOT / "config" / "routing")
    return {"SB_EMAIL_TENANTS": json.dumps(sorted(p.stem for p in routing.glob("*.yaml")))}


# The grant name of the operator token `up` makes: every shop, for the operator API.
OPERATOR = "dev-operator"


def dev_supervisor_tokens() -> dict[str, str]:
    """One supervisor token per shop of the dev roster and one operator token for every shop (key "*"), made anew
    for each run of `up` (printed when it is up); none when SB_OPERATOR_TOKENS is set (those are used instead)."""
    if "SB_OPERATOR_TOKENS" in os.environ:
        return {}
    return {tenant: secrets.token_urlsafe(18) for tenant in ("shop-a", "shop-b", "*")}


def _grant(tenant: str, token: str) -> dict[str, object]:
    name = OPERATOR if tenant == "*" else f"supervisor-{tenant}"
    return {"name": name, "token": token, "tenants": [tenant]}


def _supervisor_env(name: str, ports: dict[str, int], supervisors: dict[str, str], host: str) -> dict[str, str]:
    """Presence and the gateway share the supervisors' SB_OPERATOR_TOKENS; the gateway gets SB_PRESENCE_URL."""
    env: dict[str, str] = {}
    if name in ("presence", "gateway") and supervisors:
        env["SB_OPERATOR_TOKENS"] = json.dumps([_grant(t, tok) for t, tok in supervisors.items()])
    if name == "gateway" and "presence" in ports:
        env["SB_PRESENCE_URL"] = f"http://{host}:{ports['presence']}"
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


def write_endpoints(
    run_dir: Path, infra: Infrastructure, services: list[RunningService], front: FrontDoor | None = None
) -> Path:
    """Record where everything listens (and its pid) in `<run_dir>/endpoints.json` for tools and tests; `front`:
    what `up` prints besides (desk, board, SMTP, operator API and the dev credentials)."""
    path = run_dir / "endpoints.json"
    path.write_text(
        json.dumps(
            {
                "kafka_bootstrap": infra.bootstrap,
                "redis_url": infra.redis_url,
                "infrastructure_pids": infra.pids,
                "services": {s.name: {"http": s.url, "port": s.port, "pid": s.proc.pid} for s in services},
                **(asdict(front) if front else {}),
            },
            indent=2,
        )
    )
    return path


def up(run_dir: Path | None = None, ready_timeout: float = 90.0) -> int:
    """Run the whole stack in the foreground; Ctrl-C (or SIGTERM) stops everything and returns 0."""
    stop = _stop_signal()
    started = time.monotonic()
    with claimed_run_dir(run_dir) as claimed:
        return _run_stack(claimed, ready_timeout, stop, started)


def _run_stack(run_dir: Path, ready_timeout: float, stop: _Flag, started: float) -> int:
    services: list[RunningService] = []
    bind = bind_address()
    host = reach_address(bind)
    smtp_port = int(os.environ.get("SB_SMTP_PORT") or (SMTP_PORT if not port_open(SMTP_PORT) else free_port()))
    with infrastructure(run_dir) as infra:
        bootstrap, redis_url = infra.bootstrap, infra.redis_url
        try:
            asyncio.run(ensure_topics(bootstrap, Topics(os.environ.get("SB_TOPIC_PREFIX", "")).specs()))
            supervisors = dev_supervisor_tokens()
            names = [n for n in existing_services() if n not in NOT_STARTED_BY_UP]
            extra = {"SB_HTTP_HOST": bind, "SB_SMTP_HOST": bind, "SB_SMTP_PORT": str(smtp_port)}
            if not os.environ.get("SB_ORDER_LOOKUP_URL"):
                services.append(start_order_service(run_dir))
                extra["SB_ORDER_LOOKUP_URL"] = f"http://127.0.0.1:{services[-1].port}"
                # The same dev service answers the e-mail and phone adapters' customer (tier) lookups.
                if not os.environ.get("SB_CUSTOMER_LOOKUP_URL"):
                    extra["SB_CUSTOMER_LOOKUP_URL"] = extra["SB_ORDER_LOOKUP_URL"]
            services += start_services(names, bootstrap, redis_url, run_dir, supervisors, extra, host)
            wait_ready(services, ready_timeout)
            front = front_door(services, f"{host}:{smtp_port}", supervisors, bind)
            write_endpoints(run_dir, infra, services, front)
            _print_table(bootstrap, redis_url, services, time.monotonic() - started, run_dir, front)
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


def dev_logins() -> dict[str, dict[str, str]]:
    """The desk logins of the roster the gateway reads (SB_AGENTS_FILE, else the dev roster): per shop, each
    agent's id and clear-text dev password (agents with only a hashed password are left out)."""
    roster = load_roster(os.environ.get("SB_AGENTS_FILE") or None)
    return {t.tenant_id: {a.agent_id: a.password for a in t.agents if a.password} for t in roster.tenants}


@dataclass
class FrontDoor:
    """Where a person starts, and the dev credentials: what `up` prints once the stack is ready."""

    bind: str
    desk: str | None = None
    board: str | None = None
    smtp: str | None = None
    operator_api: str | None = None
    operator_token: str | None = None
    agent_logins: dict[str, dict[str, str]] = field(default_factory=dict)
    supervisor_tokens: dict[str, str] = field(default_factory=dict)


def front_door(services: list[RunningService], smtp: str, supervisors: dict[str, str], bind: str) -> FrontDoor:
    """The desk, board, SMTP and operator API addresses of the running `services`, and the dev credentials."""
    by_name = {s.name: s for s in services}
    front = FrontDoor(bind=bind, operator_token=supervisors.get("*"))
    if "gateway" in by_name:
        front.desk, front.board = f"{by_name['gateway'].url}/desk/", f"{by_name['gateway'].url}/board/"
        front.agent_logins = dev_logins()
        front.supervisor_tokens = {t: tok for t, tok in supervisors.items() if t != "*"}
    if "email" in by_name:
        front.smtp = smtp
    if "presence" in by_name:
        front.operator_api = f"{by_name['presence'].url}/v1/operator/tenants/{{tenant}}/"
    return front


def _print_table(
    bootstrap: str,
    redis_url: str,
    services: list[RunningService],
    took: float,
    run_dir: Path,
    front: FrontDoor,
) -> None:
    lines = [
        f"switchboard is up in {took:.1f}s (Ctrl-C stops everything)",
        f"  kafka      {bootstrap}",
        f"  redis      {redis_url}",
    ]
    lines += [f"  {s.name:<10} {s.url}  (/healthz /readyz /metrics)" for s in services]
    if front.desk:
        lines.append(f"  desk       {front.desk}   (shop / agent / password below)")
        for tenant, agents in front.agent_logins.items():
            lines.append(f"             {tenant}: " + "  ".join(f"{a} / {p}" for a, p in agents.items()))
        lines.append(f"  board      {front.board}")
        lines += [f"             supervisor token of {t}: {tok}" for t, tok in front.supervisor_tokens.items()]
    if front.smtp:
        lines.append(f"  smtp       {front.smtp}   (mail to service@<shop>.inbound.switchboard.local)")
    if front.operator_api:
        lines.append(f"  operator   {front.operator_api}   (docs/operator-api.md)")
        if front.operator_token:
            lines.append(f"             Authorization: Bearer {front.operator_token}   (every shop)")
    if any(s.name == "chat" for s in services):
        lines.append(
            "  widget     switchboard widget-url --tenant shop-a --customer buyer-1 [--claim member_tier=88VIP]"
        )
    where = "every address" if front.bind in ("0.0.0.0", "::") else front.bind
    lines.append(f"  listening  on {where} ({BIND_ENV} to change; Kafka and Redis stay on loopback)")
    lines.append(f"  logs       {run_dir / 'logs'}")
    print("\n".join(lines), flush=True)
