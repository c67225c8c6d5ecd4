"""`python -m switchboard_tools.bench.gateway`: how many idle desk sockets one gateway process holds, memory per socket,
and how many desk events per second it fans out.

It starts one gateway process (`python -m switchboard.gateway`), its own Redis (unless --redis-url), desktop
processes that open the sockets (gateway_client), then appends events to the agents' outboxes with the same Lua
append the router uses and counts what the desktops receive. Kafka is needed for presence logins
(KAFKA_BOOTSTRAP, default 127.0.0.1:19092).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from switchboard.contracts import Channel, DeskEvent, DeskEventType, InboundMessage
from switchboard.gateway.limits import raise_open_files
from switchboard.runtime.kafka import RecordProducer, ensure_topics
from switchboard.runtime.redis_client import connect_url, redis_client, redis_security_options
from switchboard.runtime.settings import ServiceSettings
from switchboard.runtime.topics import Topics
from switchboard.state.agents import PresenceStore
from switchboard.state.keys import Keys
from switchboard.state.outbox import DESK_APPEND_LUA
from switchboard_tools.bench.gateway_roster import agent_of, bench_roster
from switchboard_tools.stack.kafka import LocalKafka
from switchboard_tools.stack.procs import free_port
from switchboard_tools.stack.redis import LocalRedis

APPEND = DESK_APPEND_LUA + "\nreturn desk_append(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2])\n"
SECRET = "bench-secret-" + "x" * 32


@dataclass
class Figures:
    """What the benchmark measured."""

    sockets: int = 0
    connect_seconds: float = 0.0
    connect_cpu_s: float = 0.0
    rss_idle_mib: float = 0.0
    rss_sockets_mib: float = 0.0
    kib_per_socket: float = 0.0
    events: int = 0
    events_per_s: float = 0.0
    append_per_s: float = 0.0
    gateway_cpu_s: float = 0.0
    events_per_gateway_cpu_s: float = 0.0


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _load_agents(settings: ServiceSettings, agents: int, tenants: int) -> Path:
    """Write the roster file for the gateway and the agents into Redis (as presence would)."""
    roster = bench_roster(agents, tenants)
    path = Path(tempfile.mkdtemp(prefix="sb-gw-bench-")) / "roster.yaml"
    path.write_text(yaml.safe_dump(roster.model_dump(exclude_none=True), allow_unicode=True))
    redis = redis_client(settings, max_connections=64)
    producer = RecordProducer(settings)
    await producer.start()
    try:
        store = PresenceStore(redis, Keys(settings.key_prefix), producer)
        for tenant in roster.tenants:
            for start in range(0, len(tenant.agents), 500):
                chunk = tenant.agents[start : start + 500]
                await asyncio.gather(*(store.add_agent(tenant.tenant_id, a, publish=False) for a in chunk))
    finally:
        await producer.stop()
        await redis.aclose()
    return path


async def _wait_ready(port: int, proc: asyncio.subprocess.Process, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.returncode is not None:
            raise RuntimeError("gateway exited during start-up")
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /readyz HTTP/1.0\r\n\r\n")
            status = (await reader.readline()).decode()
            writer.close()
            if " 200 " in status:
                return
        except OSError:
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError("gateway not ready in time")


async def _start_gateway(
    settings: ServiceSettings, roster: Path, port: int, profile: str
) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "REDIS_URL": settings.redis_url,
        "SB_TOPIC_PREFIX": settings.topic_prefix,
        "SB_KEY_PREFIX": settings.key_prefix,
        "SB_HTTP_PORT": str(port),
        "SB_HTTP_HOST": "127.0.0.1",
        "SB_SERVICE_NAME": "gateway",
        "SB_JWT_SECRET": SECRET,
        "SB_AGENTS_FILE": str(roster),
        "SB_LOG_LEVEL": "WARNING",
    }
    profiler = ["-m", "cProfile", "-o", profile] if profile else []
    proc = await asyncio.create_subprocess_exec(sys.executable, *profiler, "-m", "switchboard.gateway", env=env)
    await _wait_ready(port, proc)
    return proc


class Desktops:
    """The client processes and what they report."""

    def __init__(self) -> None:
        self.procs: list[asyncio.subprocess.Process] = []
        self.events: dict[int, int] = {}
        self.connected: dict[int, dict[str, Any]] = {}
        self.tasks: list[asyncio.Task[None]] = []
        self.changed = asyncio.Event()

    async def start(self, args: argparse.Namespace, url: str) -> None:
        per = args.sockets // args.clients
        for n in range(args.clients):
            count = per if n < args.clients - 1 else args.sockets - per * (args.clients - 1)
            cmd = [sys.executable, "-m", "switchboard_tools.bench.gateway_client", "--url", url, "--secret", SECRET]
            cmd += ["--start", str(n * per), "--count", str(count), "--tenants", str(args.tenants)]
            cmd += ["--concurrency", str(args.concurrency), "--ack-every", str(args.ack_every)]
            cmd += ["--deflate"] if args.deflate else []
            proc = await asyncio.create_subprocess_exec(
                *cmd, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
            )
            self.procs.append(proc)
            self.tasks.append(asyncio.create_task(self._listen(n, proc)))

    async def _listen(self, n: int, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        async for line in proc.stdout:
            report = json.loads(line)
            if "connected" in report:
                self.connected[n] = report
            elif "events" in report:
                self.events[n] = report["events"]
            self.changed.set()

    async def until(self, done: Callable[[], bool], timeout: float) -> None:
        """Wait until `done()` holds after a report, or `timeout` passed."""
        async with asyncio.timeout(timeout):
            while not done():
                self.changed.clear()
                await self.changed.wait()

    def agents(self, sockets: int) -> list[int]:
        """Indices of the agents whose socket opened."""
        failed = {i for report in self.connected.values() for i in report["failed"]}
        return [i for i in range(sockets) if i not in failed]

    def total_events(self) -> int:
        """Events all desktops received so far."""
        return sum(self.events.values())

    async def stop(self) -> None:
        """Close stdin of every client and wait for them."""
        for proc in self.procs:
            if proc.stdin is not None:
                proc.stdin.close()
        if self.procs:
            await asyncio.wait([asyncio.create_task(p.wait()) for p in self.procs], timeout=30)
        for proc in self.procs:
            if proc.returncode is None:
                proc.kill()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def _appends(args: argparse.Namespace, settings: ServiceSettings, agents: list[int]) -> list[tuple[str, ...]]:
    """One prepared append (keys, agent, serialized event) per agent: the appender must cost far less than the
    gateway it measures, so nothing is built per event."""
    keys = Keys(settings.key_prefix)
    text = "您好, where is my parcel? order 1234567890 " * 2
    prepared: list[tuple[str, ...]] = []
    for index in agents:
        tenant, agent = agent_of(index, args.tenants)
        event = DeskEvent(
            tenant_id=tenant,
            agent_id=agent,
            type=DeskEventType.DESK_EVENT_MESSAGE,
            conversation_id=f"conv-{index}",
            epoch=1,
            message=InboundMessage(message_id=f"m-{index}", tenant_id=tenant, channel=Channel.CHANNEL_CHAT, text=text),
        )
        outbox, seq, notify = keys.desk_outbox(tenant, agent), keys.desk_seq(tenant, agent), keys.desk_notify(tenant)
        prepared.append((outbox, seq, notify, agent, event.SerializeToString().decode("latin-1")))
    return prepared


async def _fan_out(args: argparse.Namespace, settings: ServiceSettings, desktops: Desktops) -> tuple[float, float]:
    """Append args.events events round-robin over the agents; (append seconds, until-all-received seconds)."""
    redis = connect_url(settings.redis_url, encoding="latin-1", **redis_security_options(settings))
    try:
        sha = await redis.script_load(APPEND)
        base = desktops.total_events()
        prepared = _appends(args, settings, desktops.agents(args.sockets))
        started = time.monotonic()
        for start in range(0, args.events, args.batch):
            pipe = redis.pipeline(transaction=False)
            for i in range(start, min(start + args.batch, args.events)):
                pipe.evalsha(sha, 3, *prepared[i % len(prepared)])
            await pipe.execute()
        appended = time.monotonic() - started
        await desktops.until(lambda: desktops.total_events() - base >= args.events, timeout=300)
        return appended, time.monotonic() - started
    finally:
        await redis.aclose()


async def _measure(
    args: argparse.Namespace,
    settings: ServiceSettings,
    gateway: asyncio.subprocess.Process,
    port: int,
    desktops: Desktops,
    figures: Figures,
) -> None:
    """Open the sockets, weigh the gateway, fan the events out; fills `figures` and prints them."""
    await asyncio.sleep(2)
    figures.rss_idle_mib = _rss_mib(gateway.pid)
    started, cpu_before = time.monotonic(), _cpu_s(gateway.pid)
    await desktops.start(args, f"ws://127.0.0.1:{port}/desk")
    await desktops.until(lambda: len(desktops.connected) >= args.clients, timeout=600)
    figures.connect_seconds = time.monotonic() - started
    figures.connect_cpu_s = _cpu_s(gateway.pid) - cpu_before
    figures.sockets = int(sum(r["connected"] for r in desktops.connected.values()))
    await asyncio.sleep(3)
    figures.rss_sockets_mib = _rss_mib(gateway.pid)
    figures.kib_per_socket = (figures.rss_sockets_mib - figures.rss_idle_mib) * 1024 / max(1, figures.sockets)
    print(
        f"sockets held: {figures.sockets} of {args.sockets} in {figures.connect_seconds:.1f} s "
        f"(gateway CPU {figures.connect_cpu_s:.1f} s); gateway RSS "
        f"{figures.rss_idle_mib:.0f} MiB idle -> {figures.rss_sockets_mib:.0f} MiB "
        f"({figures.kib_per_socket:.1f} KiB per socket)",
        flush=True,
    )
    if args.events:
        cpu_before = _cpu_s(gateway.pid)
        appended, elapsed = await _fan_out(args, settings, desktops)
        figures.events = desktops.total_events()
        figures.gateway_cpu_s = _cpu_s(gateway.pid) - cpu_before
        figures.events_per_s = args.events / elapsed
        figures.events_per_gateway_cpu_s = args.events / max(figures.gateway_cpu_s, 0.01)
        figures.append_per_s = args.events / appended
        print(
            f"fan-out: {args.events} events appended at {figures.append_per_s:.0f}/s, all received after "
            f"{elapsed:.2f} s: {figures.events_per_s:.0f} events/s (gateway CPU {figures.gateway_cpu_s:.1f} s: "
            f"{figures.events_per_gateway_cpu_s:.0f} events per gateway CPU-second); "
            f"gateway RSS now {_rss_mib(gateway.pid):.0f} MiB",
            flush=True,
        )


async def run(args: argparse.Namespace) -> Figures:
    """The whole benchmark; returns its figures."""
    raise_open_files(args.sockets + 4096)
    base = ServiceSettings()
    prefix = f"gwbench{uuid.uuid4().hex[:6]}"
    own_redis = own_kafka = None
    if args.own_kafka:
        own_kafka = LocalKafka(Path(tempfile.mkdtemp(prefix="sb-gw-bench-kafka-")))
        own_kafka.start()
        base = base.model_copy(update={"kafka_bootstrap": own_kafka.bootstrap})
    redis_url = args.redis_url
    if not redis_url:
        own_redis = LocalRedis(Path(tempfile.mkdtemp(prefix="sb-gw-bench-redis-")))
        own_redis.start()
        redis_url = own_redis.url
    settings = base.model_copy(
        update={"redis_url": redis_url, "topic_prefix": prefix + ".", "key_prefix": prefix, "service_name": "gw-bench"}
    )
    await ensure_topics(settings.kafka_bootstrap, Topics(settings.topic_prefix).specs(1))
    figures = Figures()
    gateway = None
    desktops = Desktops()
    try:
        roster = await _load_agents(settings, args.sockets, args.tenants)
        port = free_port()
        gateway = await _start_gateway(settings, roster, port, args.profile)
        await _measure(args, settings, gateway, port, desktops, figures)
    finally:
        await desktops.stop()
        if gateway is not None and gateway.returncode is None:
            gateway.terminate()
            await gateway.wait()
        if own_redis is not None:
            own_redis.stop()
        if own_kafka is not None:
            own_kafka.stop()
    return figures


def main() -> None:
    """Parse arguments, run, print the figures as JSON too."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sockets", type=int, default=20_000)
    parser.add_argument("--clients", type=int, default=4, help="desktop processes")
    parser.add_argument("--tenants", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=100, help="handshakes in flight per desktop process")
    parser.add_argument("--events", type=int, default=200_000, help="events to fan out (0: sockets only)")
    parser.add_argument("--batch", type=int, default=1000, help="appends per Redis pipeline")
    parser.add_argument("--ack-every", type=int, default=20)
    parser.add_argument("--deflate", action="store_true", help="desktops negotiate permessage-deflate")
    parser.add_argument("--profile", default="", help="write a cProfile of the gateway process to this file")
    parser.add_argument("--own-kafka", action="store_true", help="start a Kafka broker for the run")
    parser.add_argument("--redis-url", default="", help="use this Redis instead of starting one")
    args = parser.parse_args()
    figures = asyncio.run(run(args))
    print(json.dumps(figures.__dict__))


if __name__ == "__main__":
    main()
