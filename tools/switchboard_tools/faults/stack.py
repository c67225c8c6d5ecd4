"""The running local stack the fault harness injects faults into, and that the sweeps (`malformed_sweep`,
`isolation_sweep`) receive.

Everything is on loopback and in one run directory: a Redis server (append-only file, `LocalRedis`), Kafka (one
KRaft node, or a 3-node cluster with replication factor 3 and min.insync.replicas 2), switchboard's services with
two router replicas, the order service and an SMTP sink for agents' e-mail replies. On the one-node stack the
services reach Redis and Kafka through a `faults.proxy` each (the harness blackholes them); the harness and the
sweeps talk to Redis directly (`redis_url`).

The services serve the tenants of the fault scenario (`faults.scenario`): their roster, routing, chat and e-mail
webhook secrets, phone directory and operator tokens are derived from one run key (`creds`). What a sweep needs:

- `urls`: base URL per service (`presence`, `router-1`, `router-2`, `gateway`, `chat`, `email`, `phone`, `orders`),
  `smtp`: (host, port) of the e-mail adapter;
- `kafka_bootstrap`, `redis_url`, `topic_prefix`, `key_prefix` (build `Topics` / `Keys` from the prefixes);
- `tenants`, `agents` (tenant → agent ids), `creds` (`agent_password`, `chat_secret`, `email_secret`,
  `phone_key`, `operator_token` for every shop, `shop_operator_token` for one);
- `processes`: name → process of everything started here; `crashed()` names those that exited without being told.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from aiosmtpd.controller import Controller

from switchboard.runtime.kafka import ensure_topics
from switchboard.runtime.logs import get_logger
from switchboard.runtime.topics import Topics
from switchboard_tools.faults.kafka import KafkaCluster, KafkaNode
from switchboard_tools.faults.scenario import RUN_KEY, fault_scenario
from switchboard_tools.loadgen.customers import Endpoints
from switchboard_tools.loadgen.fixtures import Credentials, write_stack_config
from switchboard_tools.loadgen.localstack import ReplySink
from switchboard_tools.loadgen.schedule import build_schedule
from switchboard_tools.stack.procs import free_port, port_open, spawn, terminate, wait_for
from switchboard_tools.stack.redis import LocalRedis
from switchboard_tools.stack.up import RunningService, module_of, wait_ready

log = get_logger(__name__)

# The services of the stack in start order; the router runs as two replicas, router-1 and router-2.
SERVICES = ("presence", "router-1", "router-2", "gateway", "chat", "email", "phone")


@dataclass(frozen=True)
class StackOptions:
    """The shape of a fault stack."""

    # 1: one KRaft node behind a proxy; 3: a cluster (RF 3, min ISR 2), no proxy.
    kafka_nodes: int = 1
    routers: int = 2
    partitions: int = 4
    # More environment for every service (e.g. SB_KAFKA_SESSION_TIMEOUT_MS).
    env: tuple[tuple[str, str], ...] = ()
    ready_timeout_s: float = 180.0


@dataclass
class Proc:
    """A process started here, with what it takes to start it again."""

    name: str
    args: list[str]
    env: dict[str, str]
    log: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    # Set while the harness has it down on purpose (killed, stopped): not a crash.
    expected_down: bool = False

    def start(self) -> None:
        """Spawn it (in its own process group)."""
        self.proc = spawn(self.args, self.log, env=self.env)
        self.expected_down = False

    @property
    def url(self) -> str:
        """Its HTTP base URL (services only)."""
        return f"http://127.0.0.1:{self.port}"


@dataclass
class FaultStack:
    """A running stack: where everything listens, how to reach the tenants, and the levers for faults."""

    run_dir: Path
    options: StackOptions
    creds: Credentials
    tenants: list[str]
    agents: dict[str, list[str]]
    topic_prefix: str
    key_prefix: str
    redis: LocalRedis
    kafka: KafkaNode | KafkaCluster
    procs: dict[str, Proc] = field(default_factory=dict)
    smtp: tuple[str, int] = ("127.0.0.1", 0)
    relay: Controller | None = None
    config_env: dict[str, str] = field(default_factory=dict)

    # -- where things are -----------------------------------------------------------------------------------------
    @property
    def redis_url(self) -> str:
        """Redis, directly (not through the proxy the services use)."""
        return self.redis.url

    @property
    def kafka_bootstrap(self) -> str:
        """Kafka's bootstrap address (through the proxy on the one-node stack: the broker advertises it)."""
        return self.kafka.bootstrap if isinstance(self.kafka, KafkaCluster) else f"127.0.0.1:{self._kafka_port()}"

    def _kafka_port(self) -> int:
        proxy = self.procs.get("proxy-kafka")
        return proxy.port if proxy is not None else self.kafka.port if isinstance(self.kafka, KafkaNode) else 0

    @property
    def urls(self) -> dict[str, str]:
        """Base URL per HTTP service."""
        return {name: p.url for name, p in self.procs.items() if p.port and not name.startswith("proxy-")}

    @property
    def processes(self) -> dict[str, subprocess.Popen[bytes]]:
        """Every process started here that runs now, by name (services, proxies, `redis`, `kafka-<n>`)."""
        found = {name: p.proc for name, p in self.procs.items() if p.proc is not None}
        if self.redis.proc is not None:
            found["redis"] = self.redis.proc
        for i, node in enumerate(self.kafka_nodes(), start=1):
            if node.proc is not None:
                found[f"kafka-{i}"] = node.proc
        return found

    def kafka_nodes(self) -> list[KafkaNode]:
        """The Kafka nodes (one, or the cluster's)."""
        return self.kafka.nodes if isinstance(self.kafka, KafkaCluster) else [self.kafka]

    def endpoints(self) -> Endpoints:
        """The stack as the load generator sees it."""
        urls = self.urls
        return Endpoints(
            chat_http=urls["chat"],
            gateway_http=urls["gateway"],
            phone_http=urls["phone"],
            presence_http=urls["presence"],
            smtp_host=self.smtp[0],
            smtp_port=self.smtp[1],
            kafka_bootstrap=self.kafka_bootstrap,
            redis_url=self.redis_url,
            topic_prefix=self.topic_prefix,
            key_prefix=self.key_prefix,
        )

    def routers(self) -> list[str]:
        """The router replicas' names."""
        return sorted(name for name in self.procs if name.startswith("router-"))

    def crashed(self) -> list[str]:
        """Services and proxies that exited although nobody stopped them."""
        return sorted(
            name
            for name, p in self.procs.items()
            if p.proc is not None and not p.expected_down and p.proc.poll() is not None
        )

    # -- levers ---------------------------------------------------------------------------------------------------
    def signal(self, name: str, sig: signal.Signals) -> None:
        """Send `sig` to a service's or proxy's process group."""
        proc = self.procs[name].proc
        if proc is None:
            raise RuntimeError(f"{name} is not running")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)

    def kill(self, name: str) -> None:
        """SIGKILL a service and reap it."""
        entry = self.procs[name]
        entry.expected_down = True
        self.signal(name, signal.SIGKILL)
        if entry.proc is not None:
            entry.proc.wait()

    def pause(self, name: str) -> None:
        """SIGSTOP a service (it holds its sockets and its Kafka membership, and answers nothing)."""
        self.signal(name, signal.SIGSTOP)

    def resume(self, name: str) -> None:
        """SIGCONT a paused service."""
        self.signal(name, signal.SIGCONT)

    def restart(self, name: str, wait: bool = True) -> None:
        """Start a service again on the same port with the same environment; wait until /readyz answers."""
        entry = self.procs[name]
        if entry.proc is not None and entry.proc.poll() is None:
            terminate(entry.proc)
        entry.start()
        if wait:
            self.wait_ready([name])

    def wait_ready(self, names: list[str], timeout: float | None = None) -> None:
        """Wait until each named service answers /readyz 200."""
        services = []
        for name in names:
            entry = self.procs[name]
            assert entry.proc is not None, name
            services.append(RunningService(name, entry.port, entry.proc, entry.log))
        wait_ready(services, timeout or self.options.ready_timeout_s)

    def kill_redis(self) -> None:
        """SIGKILL Redis (its AOF keeps what was fsynced)."""
        self.redis.kill()

    def restart_redis(self, empty: bool = False) -> None:
        """Start Redis again on its port, from its AOF, or wiped first (`empty`)."""
        self.redis.restart(empty=empty)

    def kill_broker(self, index: int = 0) -> None:
        """SIGKILL one Kafka node."""
        self.kafka_nodes()[index].kill()

    def start_broker(self, index: int = 0) -> None:
        """Start a killed Kafka node again from its data."""
        self.kafka_nodes()[index].start()

    def blackhole(self, target: str) -> None:
        """Cut the line between the services and `target` ("redis" or "kafka"): silence, no reset."""
        self.signal(f"proxy-{target}", signal.SIGUSR1)

    def heal(self, target: str) -> None:
        """Restore the line to `target`."""
        self.signal(f"proxy-{target}", signal.SIGUSR2)

    def reset_connections(self, target: str) -> None:
        """Drop every open connection to `target` at once."""
        self.signal(f"proxy-{target}", signal.SIGHUP)

    # -- life -----------------------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop everything started here (services first, then proxies, Kafka, Redis)."""
        for entry in reversed(list(self.procs.values())):
            if entry.proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(entry.proc.pid, signal.SIGCONT)  # a paused one would never see its SIGTERM
                terminate(entry.proc)
        if self.relay is not None:
            self.relay.stop()
        if isinstance(self.kafka, KafkaCluster):
            self.kafka.stop()
        else:
            self.kafka.stop()
        self.redis.stop()


def _proxy(name: str, upstream: int, logs: Path, port: int | None = None) -> Proc:
    port = port or free_port()
    args = [sys.executable, "-m", "switchboard_tools.faults.proxy", str(port), str(upstream)]
    entry = Proc(name, args, dict(os.environ), logs / f"{name}.log", port)
    entry.start()
    wait_for(lambda: port_open(port), 20, name)
    return entry


def _service_env(stack: FaultStack, name: str, bootstrap: str, redis_url: str) -> dict[str, str]:
    service = name.split("-", 1)[0]
    env = {
        **os.environ,
        **stack.config_env,
        "KAFKA_BOOTSTRAP": bootstrap,
        "REDIS_URL": redis_url,
        "SB_TOPIC_PREFIX": stack.topic_prefix,
        "SB_KEY_PREFIX": stack.key_prefix,
        "SB_SERVICE_NAME": service,
        "SB_INSTANCE_ID": name,
        "SB_HTTP_HOST": "127.0.0.1",
        "SB_HTTP_PORT": str(stack.procs[name].port if name in stack.procs else 0),
        "SB_SMTP_HOST": "127.0.0.1",
        "SB_SMTP_PORT": str(stack.smtp[1]),
        "SB_LOG_LEVEL": "WARNING",
        # Presence notices a desktop gone with work in hand within a row, so that work reaches another agent.
        "SB_HEARTBEAT_GRACE_S": "12",
        **dict(stack.options.env),
    }
    if stack.relay is not None:
        env |= {"SB_RELAY_HOST": "127.0.0.1", "SB_RELAY_PORT": str(stack.relay.port)}
    return env


@contextlib.contextmanager
def fault_stack(run_dir: Path, options: StackOptions | None = None) -> Iterator[FaultStack]:
    """Start a fault stack in `run_dir` (wiped first); stop everything when the block ends."""
    options = options or StackOptions()
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    scenario = fault_scenario()
    creds = Credentials(RUN_KEY)
    config_env = write_stack_config(scenario, build_schedule(scenario), creds, run_dir / "config")
    tenants = [t.id for t in scenario.all_tenants()]
    agents = {t: [s.agent_id for s in build_schedule(scenario).agents if s.tenant_id == t] for t in tenants}
    logs = run_dir / "logs"
    kafka: KafkaNode | KafkaCluster
    if options.kafka_nodes == 1:
        kafka = KafkaNode(run_dir / "kafka", advertised_port=free_port())
    else:
        kafka = KafkaCluster(run_dir / "kafka", size=options.kafka_nodes)
    stack = FaultStack(
        run_dir=run_dir,
        options=options,
        creds=creds,
        tenants=tenants,
        agents=agents,
        topic_prefix="fx.",
        key_prefix="fx",
        redis=LocalRedis(run_dir / "redis"),
        kafka=kafka,
        config_env=config_env,
    )
    try:
        _start(stack, logs)
        yield stack
    finally:
        stack.stop()


def _start(stack: FaultStack, logs: Path) -> None:
    started = time.monotonic()
    stack.redis.start()
    stack.kafka.start()
    redis_url = stack.redis.url
    if isinstance(stack.kafka, KafkaNode):
        # The broker advertises the proxy's port: every client connection passes the proxy.
        assert stack.kafka.advertised_port is not None
        stack.procs["proxy-kafka"] = _proxy("proxy-kafka", stack.kafka.port, logs, stack.kafka.advertised_port)
        stack.procs["proxy-redis"] = _proxy("proxy-redis", stack.redis.port, logs)
        redis_url = f"redis://127.0.0.1:{stack.procs['proxy-redis'].port}/0"
    bootstrap = stack.kafka_bootstrap
    replication = stack.kafka.replication if isinstance(stack.kafka, KafkaCluster) else 1
    asyncio.run(ensure_topics(bootstrap, Topics(stack.topic_prefix).specs(stack.options.partitions), replication))
    stack.relay = Controller(ReplySink(), hostname="127.0.0.1", port=free_port())
    stack.relay.start()
    stack.smtp = ("127.0.0.1", free_port())
    orders_port = free_port()
    orders_env = {**os.environ, "SB_HTTP_PORT": str(orders_port), "SB_ORDERS_FILE": stack.config_env["SB_ORDERS_FILE"]}
    orders_args = [sys.executable, "-m", "switchboard_tools.orders", "--host", "127.0.0.1"]
    stack.procs["orders"] = Proc("orders", orders_args, orders_env, logs / "orders.log", orders_port)
    stack.procs["orders"].start()
    lookup = stack.procs["orders"].url
    stack.config_env |= {"SB_ORDER_LOOKUP_URL": lookup, "SB_CUSTOMER_LOOKUP_URL": lookup}
    names = [n for n in SERVICES if not n.startswith("router-")]
    names[1:1] = [f"router-{i}" for i in range(1, stack.options.routers + 1)]
    for name in names:
        stack.procs[name] = Proc(
            name, [sys.executable, "-m", module_of(name.split("-", 1)[0])], {}, Path(), free_port()
        )
    stack.config_env["SB_PRESENCE_URL"] = stack.procs["presence"].url
    for name in names:
        entry = stack.procs[name]
        entry.env = _service_env(stack, name, bootstrap, redis_url)
        entry.log = logs / f"{name}.log"
        entry.start()
    stack.wait_ready(["orders", *names])
    log.info("fault_stack_up", took_s=round(time.monotonic() - started, 1), run_dir=str(stack.run_dir))
