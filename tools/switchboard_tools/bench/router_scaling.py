"""Router scaling: 1, 2, 3 ... router processes against one broker and one Redis (docs/capacity.md).

    python -m switchboard_tools.bench.router_scaling [--routers 1 2 3] [--conversations 20000] [--partitions 12]

For each count: the router processes (`python -m switchboard.router`, one consumer group) on topics and keys of
their own, agents with room for every conversation written to Redis, a warm-up until every router holds partitions
and decides, then `--conversations` new conversations of the Tmall example config produced as fast as the broker
takes them. It prints, per count, the decisions per second (from the first record sent to the last decision on the
routing topic) and the CPU-µs per decision of the routers together, of Redis and of Kafka (read from /proc).

On a machine with fewer cores than processes the wall-clock rate cannot grow with the count: the CPU per decision is
the figure that says whether routers scale (it stays flat when they share the work without overhead).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx

from switchboard.contracts import InboundMessage
from switchboard.runtime.kafka import RecordProducer, ensure_topics
from switchboard.runtime.redis_client import redis_for
from switchboard.runtime.settings import ServiceSettings
from switchboard.runtime.topics import Topics
from switchboard.state.keys import Keys
from switchboard_tools.bench.router import T, message, put_agents
from switchboard_tools.loadgen.cpu import cpu_seconds
from switchboard_tools.loadgen.probes import RoutingProbe
from switchboard_tools.stack.procs import free_port, spawn, terminate
from switchboard_tools.stack.up import infrastructure


@dataclass(frozen=True)
class Scaled:
    """The figures of one router count."""

    routers: int
    decisions: int
    seconds: float
    cpu_us: dict[str, float]
    # Plans the claim scripts did not apply as planned (sb_router_plans_not_applied_total), by reason, all routers.
    not_applied: dict[str, float]

    @property
    def rate(self) -> float:
        return self.decisions / self.seconds if self.seconds > 0 else 0.0


def _message(n: int, run: str) -> InboundMessage:
    m = message(n, run)
    m.customer.customer_id = f"buyer-{run}-{n}"  # no customer of the warm-up comes back in the measured run
    m.received_at.GetCurrentTime()
    return m


async def _ready(ports: list[int], timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2) as http:
        for port in ports:
            while True:
                try:
                    if (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"router on port {port} not ready after {timeout:.0f}s")
                await asyncio.sleep(0.3)


async def _not_applied(ports: list[int]) -> dict[str, float]:
    """sb_router_plans_not_applied_total of the routers, summed by reason."""
    found: dict[str, float] = {}
    async with httpx.AsyncClient(timeout=5) as http:
        for port in ports:
            for line in (await http.get(f"http://127.0.0.1:{port}/metrics")).text.splitlines():
                if line.startswith("sb_router_plans_not_applied_total{"):
                    reason = line.split('reason="', 1)[1].split('"', 1)[0]
                    found[reason] = found.get(reason, 0.0) + float(line.rsplit(" ", 1)[1])
    return found


async def _send(producer: RecordProducer, messages: list[InboundMessage]) -> None:
    chunk = 500
    for start in range(0, len(messages), chunk):
        part = messages[start : start + chunk]
        await asyncio.gather(*(producer.send(producer.topics.inbound, m.conversation_id, m) for m in part))


async def _decided(probe: RoutingProbe, ids: list[str], timeout: float) -> float:
    """When the last of `ids` was decided (its first routing event's time)."""
    deadline = time.monotonic() + timeout
    while any(i not in probe.first_decision for i in ids):
        if time.monotonic() > deadline:
            missing = sum(1 for i in ids if i not in probe.first_decision)
            raise TimeoutError(f"{missing} of {len(ids)} conversations not decided within {timeout:.0f}s")
        await asyncio.sleep(0.1)
    return max(probe.first_decision[i] for i in ids)


async def _measure(
    count: int, args: argparse.Namespace, bootstrap: str, redis_url: str, pids: dict[str, int]
) -> Scaled:
    run = f"rs{uuid.uuid4().hex[:6]}"
    prefix, key_prefix = f"{run}.", run
    await ensure_topics(bootstrap, Topics(prefix).specs(args.partitions))
    redis = redis_for(redis_url)
    keys = Keys(key_prefix)
    await put_agents(redis, keys, args.agents, args.conversations * 2 // args.agents + 50)
    logs = Path(tempfile.mkdtemp(prefix=f"{run}-"))
    ports = [free_port() for _ in range(count)]
    procs = []
    for i, port in enumerate(ports):
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP": bootstrap,
            "REDIS_URL": redis_url,
            "SB_TOPIC_PREFIX": prefix,
            "SB_KEY_PREFIX": key_prefix,
            "SB_HTTP_PORT": str(port),
            "SB_SERVICE_NAME": "router",
            "SB_INSTANCE_ID": f"router-{i}",
            "SB_LOG_LEVEL": "WARNING",
        }
        procs.append(spawn([sys.executable, "-m", "switchboard.router"], logs / f"router-{i}.log", env=env))
    settings = ServiceSettings(kafka_bootstrap=bootstrap, topic_prefix=prefix, service_name="router-scaling")
    producer = RecordProducer(settings)
    probe = RoutingProbe(bootstrap, prefix, [T])
    try:
        await _ready(ports)
        await producer.start()
        await probe.start()
        # Warm-up: every partition gets records until every one of them is decided (the group is settled).
        warm = [_message(n, f"{run}w") for n in range(args.partitions * 20)]
        await _send(producer, warm)
        await _decided(probe, [m.message_id for m in warm], 120)
        routers = {f"router-{i}": p.pid for i, p in enumerate(procs)}
        watched = {**routers, **pids}
        before = {name: cpu_seconds(pid) or 0.0 for name, pid in watched.items()}
        skipped = await _not_applied(ports)
        messages = [_message(n, run) for n in range(args.conversations)]
        started = time.time()
        await _send(producer, messages)
        last = await _decided(probe, [m.message_id for m in messages], 300)
        used = {name: (cpu_seconds(pid) or 0.0) - before[name] for name, pid in watched.items()}
        after = await _not_applied(ports)
        not_applied = {reason: n - skipped.get(reason, 0.0) for reason, n in after.items()}
    finally:
        await probe.stop()
        await producer.stop()
        for proc in procs:
            terminate(proc)
        async for key in redis.scan_iter(keys.tenant_pattern(T), count=5000):
            await redis.unlink(key)
        await redis.aclose()
    per = {"routers": sum(used[n] for n in routers) * 1e6 / len(messages)}
    per.update({name: used[name] * 1e6 / len(messages) for name in pids})
    return Scaled(count, len(messages), last - started, per, not_applied)


async def bench(args: argparse.Namespace, bootstrap: str, redis_url: str, pids: dict[str, int]) -> list[Scaled]:
    """Measure each router count in turn."""
    found = []
    for count in args.routers:
        found.append(scaled := await _measure(count, args, bootstrap, redis_url, pids))
        cpu = ", ".join(f"{name} {us:.0f}" for name, us in scaled.cpu_us.items())
        redone = ", ".join(f"{r} {n / scaled.decisions:.1%}" for r, n in sorted(scaled.not_applied.items())) or "none"
        print(
            f"  {count} router(s): {scaled.rate:8.0f} decisions/s ({scaled.decisions} in {scaled.seconds:.1f} s); "
            f"CPU-µs per decision: {cpu}; plans not applied: {redone}",
            flush=True,
        )
    return found


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m switchboard_tools.bench.router_scaling`."""
    parser = argparse.ArgumentParser(prog="python -m switchboard_tools.bench.router_scaling", description=__doc__)
    parser.add_argument("--routers", type=int, nargs="+", default=[1, 2, 3], help="router counts to measure")
    parser.add_argument("--conversations", type=int, default=20000, help="new conversations per count")
    parser.add_argument("--partitions", type=int, default=12, help="partitions of the run's topics")
    parser.add_argument("--agents", type=int, default=200, help="agents (room for every conversation)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="router-scaling-") as folder, infrastructure(Path(folder)) as infra:
        print(
            f"router scaling: {args.conversations} new conversations per count, {args.partitions} partitions, "
            f"one broker and one Redis, {os.cpu_count()} cores",
            flush=True,
        )
        asyncio.run(bench(args, infra.bootstrap, infra.redis_url, infra.pids))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
