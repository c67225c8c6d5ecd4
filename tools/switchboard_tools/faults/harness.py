"""The fault harness: for each fault, the steady load runs through the stack while the fault is injected; the
row of the table is what the history of that run shows (faults.history).

Rows run one after another on one stack (a 3-node KRaft cluster for the broker-loss row), each with load of its
own (its own seed, so its own conversations); between rows the stack is put right (proxies healed, anything down
started again). The malformed-input and tenant-isolation rows are sweeps the hostile-input and api-bounds parts
provide (`faults.malformed.malformed_sweep`, `faults.isolation.isolation_sweep`); they run on the same stack,
without the load.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from switchboard.runtime.logs import get_logger
from switchboard.runtime.redis_client import redis_for
from switchboard.runtime.settings import ServiceSettings
from switchboard.state.keys import Keys
from switchboard_tools.faults.history import CapacitySampler, History, judge
from switchboard_tools.faults.scenario import fault_scenario
from switchboard_tools.faults.stack import FaultStack, StackOptions, fault_stack
from switchboard_tools.faults.table import FaultRow
from switchboard_tools.faults.traced import TracedRun
from switchboard_tools.loadgen.schedule import build_schedule

log = get_logger(__name__)

Inject = Callable[[FaultStack, History, int], Awaitable[None]]
# Load runs this long before the first injection, and after the last one before arrivals stop.
WARMUP_S = 6.0
SETTLE_S = 6.0


@dataclass(frozen=True)
class Fault:
    """One row: what is injected, how often (full and quick runs), and how long one injection takes at most."""

    key: str
    title: str
    full: int
    quick: int
    # How long one injection and the quiet after it take, as planned (the load runs for `count` of them).
    period_s: float
    inject: Inject
    # At least this long of normal operation after each heal before the next injection (a slow restart on a busy
    # machine must not turn five short outages into one long one).
    gap_s: float = 5.0
    cluster: bool = False
    # Runs after every other row (and sweep) of its stack.
    last: bool = False


def _session_timeout_s() -> float:
    """The routers' Kafka session timeout (SB_KAFKA_SESSION_TIMEOUT_MS where the settings have it; else
    aiokafka's default of 10 s)."""
    return float(getattr(ServiceSettings(), "kafka_session_timeout_ms", 10_000)) / 1000.0


async def router_kill(stack: FaultStack, history: History, i: int) -> None:
    """SIGKILL a router replica (they take turns), start it again at once."""
    name = stack.routers()[i % len(stack.routers())]
    injection = history.inject("router SIGKILL", name)
    await asyncio.to_thread(stack.kill, name)
    await asyncio.to_thread(stack.restart, name)
    injection.healed_at = time.time()


async def router_sigstop(stack: FaultStack, history: History, i: int) -> None:
    """SIGSTOP a router past its session timeout (its partitions move to the other), then SIGCONT it: it comes
    back with a stale view and must be fenced."""
    name = stack.routers()[i % len(stack.routers())]
    injection = history.inject("router SIGSTOP", name)
    stack.pause(name)
    await asyncio.sleep(_session_timeout_s() + 5.0)
    stack.resume(name)
    injection.healed_at = time.time()


async def redis_kill(stack: FaultStack, history: History, i: int) -> None:
    """SIGKILL Redis and start it again from its append-only file."""
    injection = history.inject("Redis SIGKILL", "redis")
    await asyncio.to_thread(stack.kill_redis)
    await asyncio.sleep(1.0)
    await asyncio.to_thread(stack.restart_redis)
    injection.healed_at = time.time()


async def redis_empty(stack: FaultStack, history: History, i: int) -> None:
    """SIGKILL Redis and start it again with nothing in it (its files lost)."""
    injection = history.inject("Redis restarted empty", "redis")
    await asyncio.to_thread(stack.kill_redis)
    await asyncio.sleep(1.0)
    await asyncio.to_thread(stack.restart_redis, True)
    injection.healed_at = time.time()


async def broker_kill(stack: FaultStack, history: History, i: int) -> None:
    """SIGKILL the (only) Kafka broker and start it again: every write waits for it."""
    injection = history.inject("Kafka broker SIGKILL", "kafka-1")
    await asyncio.to_thread(stack.kill_broker, 0)
    await asyncio.sleep(2.0)
    await asyncio.to_thread(stack.start_broker, 0)
    injection.healed_at = time.time()


async def cluster_node_loss(stack: FaultStack, history: History, i: int) -> None:
    """SIGKILL one node of the 3-node cluster (they take turns), leave it down 20 s, start it again; the other
    two keep every partition writable (RF 3, min ISR 2)."""
    index = i % len(stack.kafka_nodes())
    injection = history.inject("Kafka cluster node SIGKILL", f"kafka-{index + 1}")
    await asyncio.to_thread(stack.kill_broker, index)
    await asyncio.sleep(20.0)
    await asyncio.to_thread(stack.start_broker, index)
    injection.healed_at = time.time()


def blackhole(target: str, stall_s: float) -> Inject:
    """Blackhole the line from the services to `target` for `stall_s`, then heal it."""

    async def inject(stack: FaultStack, history: History, i: int) -> None:
        injection = history.inject(f"{target} blackhole", target)
        stack.blackhole(target)
        await asyncio.sleep(stall_s)
        stack.heal(target)
        injection.healed_at = time.time()

    return inject


FAULTS: tuple[Fault, ...] = (
    Fault("router-kill", "router SIGKILL + restart", 20, 2, 22.0, router_kill),
    Fault("router-sigstop", "router SIGSTOP past its session timeout, SIGCONT", 2, 1, 30.0, router_sigstop),
    Fault("redis-kill", "Redis SIGKILL + restart (AOF everysec)", 5, 1, 15.0, redis_kill, gap_s=8.0),
    Fault("kafka-kill", "Kafka broker SIGKILL + restart (1 node)", 5, 1, 60.0, broker_kill, gap_s=20.0),
    Fault("redis-stall", "network: services ↔ Redis blackholed 5 s", 3, 1, 12.0, blackhole("redis", 5.0)),
    Fault("kafka-stall", "network: services ↔ Kafka blackholed 5 s", 3, 1, 12.0, blackhole("kafka", 5.0)),
    # Last on its stack: what a service cannot rebuild stays lost for every row after it.
    Fault("redis-empty", "Redis SIGKILL + restart empty", 1, 1, 30.0, redis_empty, last=True),
    Fault("cluster-node-loss", "3-node KRaft (RF 3, min ISR 2): one node SIGKILLed 20 s", 3, 1, 60.0,
          cluster_node_loss, cluster=True),
)  # fmt: skip
# The sweeps other parts provide: key → (module, function, title, full count, quick count).
SWEEPS = {
    "malformed": ("switchboard_tools.faults.malformed", "malformed_sweep", "malformed inputs", 10_000, 1_000),
    "isolation": ("switchboard_tools.faults.isolation", "isolation_sweep", "tenant isolation", 10_000, 1_000),
}
KEYS = [f.key for f in FAULTS] + list(SWEEPS)
# The table's order of rows, by title: the one-node stack's faults, the sweeps, its last faults, the cluster's.
ORDER = [
    *(f.title for f in FAULTS if not f.cluster and not f.last),
    *(sweep[2] for sweep in SWEEPS.values()),
    *(f.title for f in FAULTS if not f.cluster and f.last),
    *(f.title for f in FAULTS if f.cluster),
]


async def run_fault(stack: FaultStack, fault: Fault, count: int, seed: int) -> FaultRow:
    """Run the load with `count` injections of `fault`; judge the history."""
    duration = WARMUP_S + count * fault.period_s + SETTLE_S
    scenario = fault_scenario(duration_s=duration, seed=seed)
    schedule = build_schedule(scenario)
    history = History()
    run = TracedRun(scenario, schedule, stack.endpoints(), stack.creds, f"faults-{fault.key}-s{seed}", history)
    redis = redis_for(stack.redis_url)
    sampler = asyncio.create_task(CapacitySampler(redis, Keys(stack.key_prefix), stack.agents, history).run())
    injector = asyncio.create_task(_inject(stack, fault, count, history, run))
    try:
        obs = await run.execute()
        await injector
    except Exception as exc:  # a broken row is a finding of the run, not the end of the table
        log.warning("faults_row_failed", fault=fault.key, error=repr(exc))
        return FaultRow(fault.title, len(history.injections), 0, 0, 0, 0, 0, 0, None, f"harness error: {exc!r}")
    finally:
        injector.cancel()
        sampler.cancel()
        await asyncio.gather(injector, sampler, return_exceptions=True)
        await redis.aclose()
    history.notes += [n for n in obs.notes if "cut at" in n or "drain ended" in n]
    crashed = stack.crashed()
    if crashed:
        history.notes.append(f"exited on their own: {', '.join(crashed)}")
    return judge(fault.title, history, obs, schedule)


async def _inject(stack: FaultStack, fault: Fault, count: int, history: History, run: TracedRun) -> None:
    """`count` injections while the load runs; one that could not be healed before the last arrivals is not made
    (the row then shows fewer injections and says so)."""
    await run.started.wait()
    await asyncio.sleep(WARMUP_S)
    last_send = run.obs.started_at + run.schedule.last_send_s
    for i in range(count):
        if time.time() + fault.period_s - fault.gap_s > last_send:
            history.notes.append(f"{i} of {count} injections: the load ended before the rest")
            return
        began = time.monotonic()
        await fault.inject(stack, history, i)
        await asyncio.sleep(max(fault.gap_s, fault.period_s - (time.monotonic() - began)))


async def run_sweep(stack: FaultStack, key: str, quick: bool) -> FaultRow:
    """A sweep another part provides, or a row that says it is not there."""
    module_name, function, title, full, short = SWEEPS[key]
    try:
        sweep = getattr(importlib.import_module(module_name), function)
    except (ImportError, AttributeError):
        return FaultRow(title, 0, 0, 0, 0, 0, 0, 0, None, f"not run: {module_name}.{function} is not in this build")
    row: FaultRow = await sweep(stack, short if quick else full)
    return row


def heal(stack: FaultStack) -> None:
    """Put the stack right between rows: lines healed, anything down started again."""
    for target in ("redis", "kafka"):
        if f"proxy-{target}" in stack.procs:
            stack.heal(target)
    if stack.redis.proc is None or stack.redis.proc.poll() is not None:
        stack.restart_redis()
    for index, node in enumerate(stack.kafka_nodes()):
        if node.proc is None or node.proc.poll() is not None:
            stack.start_broker(index)
    for name in stack.routers():
        with contextlib.suppress(RuntimeError):
            stack.resume(name)
    for name, entry in stack.procs.items():
        if entry.proc is None or entry.proc.poll() is not None:
            log.warning("faults_restarting", service=name)
            stack.restart(name, wait=not name.startswith("proxy-"))


def selected(only: Sequence[str]) -> tuple[list[Fault], list[str]]:
    """The faults and sweeps to run (`only`: keys; empty: all)."""
    unknown = sorted(set(only) - set(KEYS))
    if unknown:
        raise ValueError(f"unknown fault {', '.join(unknown)}; choose from {', '.join(KEYS)}")
    return [f for f in FAULTS if not only or f.key in only], [k for k in SWEEPS if not only or k in only]


def run_rows(
    run_dir: Path, quick: bool, only: Sequence[str] = (), options: StackOptions | None = None
) -> list[FaultRow]:
    """Every selected row, on a one-node stack and (for the cluster row) a 3-node one, in the table's order."""
    faults, sweeps = selected(only)
    rows: list[FaultRow] = []
    single = [f for f in faults if not f.cluster]
    options = options or StackOptions()
    if single or sweeps:
        with _stack(run_dir / "single", options) as stack:
            for seed, fault in enumerate([f for f in single if not f.last], start=1):
                rows.append(asyncio.run(run_fault(stack, fault, fault.quick if quick else fault.full, seed)))
                print(" | ".join(rows[-1].cells()), file=sys.stderr, flush=True)
                heal(stack)
            for key in sweeps:
                rows.append(asyncio.run(run_sweep(stack, key, quick)))
                heal(stack)
            for seed, fault in enumerate([f for f in single if f.last], start=50):
                rows.append(asyncio.run(run_fault(stack, fault, fault.quick if quick else fault.full, seed)))
                print(" | ".join(rows[-1].cells()), file=sys.stderr, flush=True)
    clustered = [f for f in faults if f.cluster]
    if clustered:
        with _stack(run_dir / "cluster", StackOptions(kafka_nodes=3, env=options.env)) as stack:
            for seed, fault in enumerate(clustered, start=100):
                rows.append(asyncio.run(run_fault(stack, fault, fault.quick if quick else fault.full, seed)))
                print(" | ".join(rows[-1].cells()), file=sys.stderr, flush=True)
    return rows


@contextlib.contextmanager
def _stack(run_dir: Path, options: StackOptions) -> Iterator[FaultStack]:
    with fault_stack(run_dir, options) as stack:
        yield stack
