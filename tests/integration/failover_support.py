"""Router failover, measured: two router processes under a steady stream of new conversations, one SIGKILLed again
and again (or SIGSTOPped past its session and let go on); the pause per fault is the longest any conversation that
arrived around it waited for its first routing decision (the routing record's timestamp minus the inbound record's,
both stamped by their producers on this machine). At the end every message must have reached one owner's desk
once and every invariant of docs/invariants.md hold."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from aiokafka import AIOKafkaConsumer, TopicPartition
from redis.asyncio import Redis

from switchboard.routing.config import load_config_file
from switchboard.runtime.kafka import RecordProducer
from switchboard.runtime.settings import ServiceSettings
from switchboard.runtime.topics import Topics
from switchboard.state.keys import Keys
from tests.conftest import TEST_PARTITIONS
from tests.helpers import eventually
from tests.integration.router_procs import REPO, DeskSimulator, start_router, stop_router
from tests.router_support import check_invariants, message, put_agent, read_state

TENANT = "tmall-flagship"
TEXTS = ["这个尺码合适吗", "我要退货", "快递到哪了", "优惠券怎么用", "帮我改地址"]
# A new conversation this often: fine enough to see a pause to a tenth of a second.
ARRIVAL_S = 0.05


@dataclass
class FailoverRun:
    """What one run measured: kill times and each conversation's arrival and first decision (epoch seconds)."""

    kills: list[float] = field(default_factory=list)
    victim_logs: list[Path] = field(default_factory=list)
    window_s: float = 0.0
    arrived: dict[str, float] = field(default_factory=dict)
    decided: dict[str, float] = field(default_factory=dict)

    def worst(self) -> list[str]:
        """Per fault: which conversation waited longest, when it arrived and was decided (seconds from the fault)."""
        result = []
        for kill in self.kills:
            window = [
                c for c, at in self.arrived.items() if kill - 0.5 <= at <= kill + self.window_s and c in self.decided
            ]
            conv = max(window, key=lambda c: self.decided[c] - self.arrived[c], default=None)
            if conv is not None:
                result.append(
                    f"{conv} arrived {self.arrived[conv] - kill:+.2f} s, decided {self.decided[conv] - kill:+.2f} s"
                )
        return result

    def pauses(self) -> list[float]:
        """Per kill: the longest wait for a first decision among conversations that arrived in the kill's window."""
        result = []
        for kill in self.kills:
            waits = [
                self.decided[conv] - at
                for conv, at in self.arrived.items()
                if kill - 0.5 <= at <= kill + self.window_s and conv in self.decided
            ]
            result.append(round(max(waits, default=float("nan")), 2))
        return result


async def _first_timestamps(bootstrap: str, topic: str) -> dict[str, float]:
    """Key → timestamp (s) of its first record on `topic`, over everything there now."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        assigned = [TopicPartition(topic, p) for p in range(TEST_PARTITIONS)]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        ends = await consumer.end_offsets(assigned)
        found: dict[str, float] = {}
        async with asyncio.timeout(30):
            while [tp for tp in assigned if await consumer.position(tp) < ends[tp]]:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    for r in records:
                        if r.key is not None:
                            found.setdefault(r.key.decode(), r.timestamp / 1000)
        return found
    finally:
        await consumer.stop()


async def _feed(producer: RecordProducer, run: FailoverRun, stop: asyncio.Event) -> None:
    n = 0
    while not stop.is_set():
        conv = f"f{n}"
        await producer.send_many(producer.topics.inbound, [(conv, message(TENANT, conv, f"m{n}", TEXTS[n % 5]))])
        run.arrived[conv] = time.time()
        n += 1
        await asyncio.sleep(ARRIVAL_S)


async def measure_failover(
    settings: ServiceSettings,
    redis: Redis,
    log_dir: Path,
    *,
    kills: int,
    window_s: float,
    env: dict[str, str],
    fault: Literal["kill", "stop"] = "kill",
    stop_s: float = 0.0,
) -> FailoverRun:
    """Run routers with `env`; `kills` times SIGKILL one (a spare or restarted one next time), or SIGSTOP one for
    `stop_s` and SIGCONT it; measure, and check that nothing was lost or owned twice."""
    await asyncio.to_thread(log_dir.mkdir, parents=True, exist_ok=True)
    run = FailoverRun(window_s=window_s)
    keys = Keys(settings.key_prefix)
    agents = [f"agent-{i}" for i in range(6)]
    for agent in agents:
        await put_agent(redis, keys, TENANT, agent, ["presales", "after_sales", "logistics", "orders", "general"])
    producer = RecordProducer(settings)
    await producer.start()
    # Two routers: each owns a share of the three partitions; a killed one is restarted for the next kill.
    names = ["router-steady", "router-victim"]
    started = await asyncio.gather(*(start_router(settings, log_dir, name, extra=env) for name in names))
    steady, spares = started[0][0], [proc for proc, _ in started[1:]]
    run.victim_logs.extend(log_dir / f"{name}.log" for name in names[1:])
    desk = DeskSimulator(redis, keys, producer, TENANT, agents, hold_s=0.02)
    desk_task = asyncio.create_task(desk.run())
    stop = asyncio.Event()
    feeding = asyncio.create_task(_feed(producer, run, stop))
    victim = spares.pop(0)
    try:
        for round_ in range(kills):
            await asyncio.sleep(2.0)  # steady state: every router owns partitions and routes
            if fault == "stop":
                await _freeze(victim, run, stop_s)
                await asyncio.sleep(window_s)
                continue
            victim.kill()  # SIGKILL: no LeaveGroup, no commit, nothing
            run.kills.append(time.time())
            await victim.wait()
            await asyncio.sleep(window_s)
            if round_ + 1 < kills:
                victim = spares.pop(0) if spares else await _restart(settings, log_dir, f"restarted-{round_}", env, run)
        await asyncio.sleep(2.0)
        stop.set()
        await feeding
        topics = Topics(settings.topic_prefix)

        async def all_decided() -> bool:
            run.decided = await _first_timestamps(settings.kafka_bootstrap, topics.routing)
            return set(run.arrived) <= set(run.decided)

        await eventually(all_decided, 60, "a decision for every conversation")
        await _every_message_delivered_once(redis, keys, run, desk)
        return run
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await feeding
        desk.stop()
        await desk_task
        for proc in [steady, victim, *spares]:
            await stop_router(proc)
        await producer.stop()


async def _freeze(victim: asyncio.subprocess.Process, run: FailoverRun, stop_s: float) -> None:
    """SIGSTOP for `stop_s`, then SIGCONT: frozen mid-whatever, still holding what it fetched."""
    victim.send_signal(signal.SIGSTOP)
    run.kills.append(time.time())
    await asyncio.sleep(stop_s)
    victim.send_signal(signal.SIGCONT)


async def _restart(
    settings: ServiceSettings, log_dir: Path, name: str, env: dict[str, str], run: FailoverRun
) -> asyncio.subprocess.Process:
    proc, _ = await start_router(settings, log_dir, name, extra=env)
    run.victim_logs.append(log_dir / f"{name}.log")
    return proc


async def _every_message_delivered_once(redis: Redis, keys: Keys, run: FailoverRun, desk: DeskSimulator) -> None:
    """Every conversation closed by its owner after its message reached exactly one desk once; no invariant broken."""
    config = load_config_file(REPO / "config" / "routing" / f"{TENANT}.yaml")
    sent = {conv: [f"m{conv[1:]}"] for conv in run.arrived}

    async def closed() -> bool:
        state = await read_state(redis, keys, config, set(sent))
        return all(state.convs.get(conv, {}).get("state") == "closed" for conv in sent)

    await eventually(closed, 90, "every conversation closed by its owner")
    check_invariants(await read_state(redis, keys, config, set(sent)), config, sent)
    assert desk.over_capacity == []
