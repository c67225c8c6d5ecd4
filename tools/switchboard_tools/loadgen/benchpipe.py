"""The pipeline under load: chat widget → chat adapter → Kafka → router → desk outbox → gateway → agent desktop.

One shop, agents with room for every conversation and direct assignment (no offers), customers that each hold one
conversation open. After a warm-up (every conversation assigned), two phases:
- *maximum* (closed loop): a few dozen customers each send their next message as soon as the previous one was
  acknowledged, for a while; the delivery rate at the desktops is the pipeline's maximum on this machine;
- *open loop*: thousands of customer sockets, as on a sale day, each sending rarely: messages at half that maximum
  on a timetable of Poisson arrivals, each sent at its time whether or not earlier ones were acknowledged. A
  message's latency runs from the time the timetable gave it, not from when it went out, so a stalled pipeline or
  generator shows in the figures (no coordinated omission); they are kept in HDR histograms.
In both phases the CPU time of every process (services, Kafka, Redis, this generator) is read from /proc and given
per delivered message (cpu.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import string
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
from hdrh.histogram import HdrHistogram

from switchboard.chat.signing import widget_token
from switchboard.runtime.logs import get_logger
from switchboard_tools.loadgen.agents import SimulatedAgent
from switchboard_tools.loadgen.cpu import CpuMeter, per_message_us
from switchboard_tools.loadgen.customers import Endpoints
from switchboard_tools.loadgen.fixtures import Credentials
from switchboard_tools.loadgen.http import run_session
from switchboard_tools.loadgen.probes import TAG, RoutingProbe
from switchboard_tools.loadgen.profile import profiled
from switchboard_tools.loadgen.scenario import Scenario
from switchboard_tools.loadgen.schedule import AgentShift
from switchboard_tools.loadgen.sockets import Socket, connect_socket
from switchboard_tools.loadgen.stats import latency_summary

log = get_logger(__name__)

TENANT = "lg-bench"
# Sockets of the closed-loop maximum and of the open-loop phase; agents, whose slots hold every conversation.
CLOSED_LOOP_SOCKETS = 64
OPEN_LOOP_SOCKETS = 2000
# One agent per closed-loop socket: each desk answers its share of the maximum (about ten replies a second), which
# is a busy agent's pace, where 8 agents each had to answer a hundred a second and their replies queued.
AGENTS = 64
# The longest wait for the agents' replies between phases.
REPLIES_TIMEOUT_S = 120.0


def bench_scenario(agents: int, slots: int) -> Scenario:
    """The bench's one shop: `agents` agents with `slots` chat slots each, assigned directly."""
    texts = {"zh": ["在吗"], "en": ["hello"]}
    return Scenario.model_validate(
        {
            "name": "bench",
            "duration_s": 1,
            "arrivals": {"baseline_per_s": 1},
            "channels": {"chat": 1},
            "languages": {"zh": 1},
            "intents": {"pre_sales": {"weight": 1, "texts": texts}},
            "tenants": [{"id": TENANT, "share": 1, "agents": agents}],
            "agents": {
                "handling_time": {"mean_s": 3600, "sigma": 0, "max_s": 3600},
                "accept_delay_s": {"min": 0, "max": 0},
                "missed_offer_probability": 0,
                "capacity": {"chat": slots, "email": 1, "phone": 1},
                "offer_mode": "auto",
            },
            "limits": {"max_conversations": 1, "max_run_s": 10},
        }
    )


@dataclass
class Deliveries:
    """Desk receive times by tag (the DeskRecorder of the bench's agents)."""

    at: dict[str, float] = field(default_factory=dict)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def desk_event(self, agent: AgentShift, frame: dict[str, Any], received_at: float) -> None:
        """Note when a tagged message reached a desktop."""
        match = TAG.search(str((frame.get("message") or {}).get("text", "")))
        if match and frame.get("event") in ("assigned", "message"):
            self.at.setdefault(match.group(1), received_at)
            self.arrived.set()

    def handled(self, agent: AgentShift, conversation_id: str, answered_at: float, closed_at: float) -> None:
        """Bench agents never close."""


# What every bench customer writes: a typical pre-sales question. Its length matters: the adapter tells a message's
# language from its letters, and a text of two characters and a 10-letter tag reads as Latin script (a lingua
# model run per message), where a shop's real messages take the cheap CJK path.
BENCH_TEXT = "这件衣服有XL码吗？今天下单什么时候能发货"


class BenchCustomer:
    """One widget socket that sends tagged messages and awaits each ack."""

    def __init__(self, endpoints: Endpoints, creds: Credentials, index: int) -> None:
        self.customer_id = f"bench-{index:04d}"
        secret = creds.chat_secret(TENANT).encode()
        query = urlencode(
            {"tenant": TENANT, "customer": self.customer_id, "token": widget_token(secret, self.customer_id)}
        )
        self.url = endpoints.chat_http.replace("http://", "ws://", 1) + f"/chat/v1/ws?{query}"
        self.ws: Socket | None = None
        self.sent_at: dict[str, float] = {}
        self.acked_at: dict[str, float] = {}
        self.acked = 0
        self._acks: dict[str, asyncio.Future[None]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._rng = random.Random(index)

    async def open(self, http: aiohttp.ClientSession) -> None:
        """Connect the widget."""
        self.ws = await connect_socket(http, self.url, open_timeout_s=30)
        self._reader = asyncio.create_task(self._read(self.ws))

    async def _read(self, ws: Socket) -> None:
        async for raw in ws:
            frame = json.loads(raw)
            tag = str(frame.get("client_msg_id", ""))
            waiter = self._acks.pop(tag, None)
            if waiter is not None and not waiter.done():
                if frame.get("type") == "ack":
                    self.acked_at[tag] = time.time()
                    waiter.set_result(None)
                else:
                    waiter.set_exception(RuntimeError(f"refused: {frame}"))

    async def send(self) -> None:
        """Send one message and wait for its ack."""
        _, waiter = await self.send_nowait()
        async with asyncio.timeout(30):
            await waiter
        self.acked += 1

    async def send_nowait(self) -> tuple[str, asyncio.Future[None]]:
        """Send one message without waiting for its ack (open loop): its tag and the future of its ack."""
        assert self.ws is not None
        tag = "".join(self._rng.choices(string.ascii_lowercase, k=10))
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._acks[tag] = waiter
        self.sent_at[tag] = time.time()
        frame = {"type": "message", "client_msg_id": tag, "kind": "text", "text": f"{BENCH_TEXT} [lg:{tag}]"}
        await self.ws.send(json.dumps(frame, ensure_ascii=False))
        return tag, waiter

    async def close(self) -> None:
        """Disconnect."""
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)


@dataclass(frozen=True)
class PipelineFigures:
    """What the pipeline did in each phase."""

    max_delivered_per_s: float
    max_acked_per_s: float
    max_inbound_per_s: float
    max_decisions_per_s: float
    # The open-loop phase: its rate and sockets, what was sent and delivered, latencies from each message's time
    # on the timetable (ms: count, p50, p90, p99, p99.9, max), and the split per stage (seconds, as latency_summary).
    open_rate_per_s: float
    open_sockets: int
    open_sent: int
    open_delivered: int
    open_latency_ms: dict[str, float]
    open_ack_ms: dict[str, float]
    open_stages_s: dict[str, dict[str, float]]
    # CPU-µs per delivered message, per process and in total (cpu.py), in each phase.
    cpu_us_max: dict[str, float]
    cpu_us_open: dict[str, float]
    # CPU seconds the bench's own process (customers, agents, probe) used per second of the maximum phase: near
    # 1.0 means the generator, not the pipeline, set the maximum.
    generator_cpu_share: float


def bench_agents() -> tuple[AgentShift, ...]:
    """The bench's agents, on for the whole run."""
    return tuple(AgentShift(TENANT, f"{TENANT}-a{i:03d}", 0.0, None, i) for i in range(AGENTS))


async def pipeline(
    endpoints: Endpoints,
    creds: Credentials,
    seconds: float,
    customers: int = CLOSED_LOOP_SOCKETS,
    open_sockets: int = OPEN_LOOP_SOCKETS,
    profile: Path | None = None,
) -> PipelineFigures:
    """Warm up, then the closed-loop maximum and the open-loop phase at half of it (the stack's roster must give
    the AGENTS agents room for `customers + open_sockets` conversations). With `profile`, a flame graph of each
    service over the maximum phase goes into that folder (loadgen/profile.py)."""
    scenario = bench_scenario(agents=AGENTS, slots=(customers + open_sockets) // AGENTS + 1)
    deliveries = Deliveries()
    shifts = bench_agents()
    leave = asyncio.Event()
    probe = RoutingProbe(endpoints.kafka_bootstrap, endpoints.topic_prefix, [TENANT])
    await probe.start()
    closed = [BenchCustomer(endpoints, creds, i) for i in range(customers)]
    many = [BenchCustomer(endpoints, creds, customers + i) for i in range(open_sockets)]
    meter = CpuMeter(endpoints.processes)
    async with run_session() as http:
        agents = [
            SimulatedAgent(
                s, scenario.agents, creds.agent_password(TENANT, s.agent_id), endpoints.gateway_http, deliveries
            )
            for s in shifts
        ]
        tasks = [asyncio.create_task(a.run(http, leave)) for a in agents]
        # The agents answer each message 1 to 4 s after it (scenario.agents.reply_s): each phase starts once the
        # replies to what came before it are sent and answered, and its CPU is read once the replies to its own
        # messages are, so a phase's CPU per message is that of its messages and their replies, and its latency is
        # not spent behind the replies of the phase before.
        try:
            await _warm_up(http, closed + many, deliveries)
            await _replies_done(agents)
            cpu_before, wall_before, before = time.process_time(), time.time(), meter.sample()
            async with profiled(endpoints.processes, profile, seconds) if profile else contextlib.nullcontext():
                maximum = await _maximum(closed, deliveries, probe, seconds)
            cpu_share = (time.process_time() - cpu_before) / (time.time() - wall_before)
            await _replies_done(agents)
            cpu_max = per_message_us(meter.since(before), maximum[4])
            before = meter.sample()
            opened = await _open_loop(many, deliveries, maximum[0] / 2, seconds)
            await _replies_done(agents)
            cpu_open = per_message_us(meter.since(before), opened.delivered)
            stages = _stage_latencies(many, deliveries, probe, opened.tags)
        finally:
            leave.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.gather(*(c.close() for c in closed + many), return_exceptions=True)
            await probe.stop()
    return PipelineFigures(
        *maximum[:4],
        opened.rate,
        len(many),
        len(opened.tags),
        opened.delivered,
        opened.latency_ms,
        opened.ack_ms,
        stages,
        cpu_max,
        cpu_open,
        cpu_share,
    )


async def _replies_done(agents: list[SimulatedAgent], timeout_s: float = REPLIES_TIMEOUT_S) -> None:
    """Wait until every agent's replies are sent and answered by the gateway (at most `timeout_s`)."""
    try:
        async with asyncio.timeout(timeout_s):
            while not all(a.quiet() for a in agents):  # noqa: ASYNC110 (the state of 64 desks, polled)
                await asyncio.sleep(0.05)
    except TimeoutError:
        log.warning("bench_replies_not_done", after_s=timeout_s, busy=sum(not a.quiet() for a in agents))


async def _warm_up(
    http: aiohttp.ClientSession, clients: list[BenchCustomer], deliveries: Deliveries, batch: int = 500
) -> None:
    """Open every socket and its conversation (one message each, all on desks), a batch of sockets at a time."""
    for start in range(0, len(clients), batch):
        part = clients[start : start + batch]
        await asyncio.gather(*(c.open(http) for c in part))
        await asyncio.gather(*(c.send() for c in part))
    await _all_delivered(clients, deliveries, 60)


def _stage_latencies(
    clients: list[BenchCustomer], deliveries: Deliveries, probe: RoutingProbe, tags: list[str]
) -> dict[str, dict[str, float]]:
    """Where the time goes: send → adapter receive → router decision → desktop, per message of the half phase."""
    sent_at = {t: at for c in clients for t, at in c.sent_at.items()}
    adapter, router, gateway = [], [], []
    for tag in tags:
        seen = probe.inbound.get(tag)
        decided = probe.first_decision.get(seen.message_id) if seen else None
        if seen is None or decided is None or tag not in deliveries.at:
            continue
        adapter.append(seen.received_at - sent_at[tag])
        router.append(decided - seen.received_at)
        gateway.append(deliveries.at[tag] - decided)
    return {
        "send → chat adapter received_at": latency_summary(adapter),
        "received_at → routing decision": latency_summary(router),
        "routing decision → desktop": latency_summary(gateway),
    }


async def _all_delivered(clients: list[BenchCustomer], deliveries: Deliveries, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and any(t not in deliveries.at for c in clients for t in c.sent_at):
        deliveries.arrived.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(deliveries.arrived.wait(), 0.5)


async def _maximum(
    clients: list[BenchCustomer], deliveries: Deliveries, probe: RoutingProbe, seconds: float
) -> tuple[float, float, float, float, int]:
    start = time.time()
    acked_before = sum(c.acked for c in clients)

    async def loop(client: BenchCustomer) -> None:
        while time.time() - start < seconds:
            await client.send()

    await asyncio.gather(*(loop(c) for c in clients))
    end = time.time()
    await _all_delivered(clients, deliveries, 30)
    in_window = [t for t in deliveries.at.values() if start <= t <= end]
    inbound = [t for t in probe.inbound_times if start <= t <= end]
    decisions = [t for t in probe.times if start <= t <= end]
    span = end - start
    acked = sum(c.acked for c in clients) - acked_before
    return len(in_window) / span, acked / span, len(inbound) / span, len(decisions) / span, len(in_window)


@dataclass(frozen=True)
class OpenLoop:
    """What the open-loop phase sent and measured."""

    rate: float
    tags: list[str]
    delivered: int
    latency_ms: dict[str, float]
    ack_ms: dict[str, float]


# Percentiles the open-loop phase reports (HDR histograms of microseconds, 1 µs to 2 minutes, 3 digits).
PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p99.9": 99.9}


def hdr_summary(values_s: list[float]) -> dict[str, float]:
    """count, p50, p90, p99, p99.9 and max (ms) of latencies in seconds, through an HDR histogram."""
    histogram = HdrHistogram(1, 120_000_000, 3)
    for value in values_s:
        histogram.record_value(max(1, min(int(value * 1e6), 120_000_000)))
    found = {"count": float(histogram.get_total_count())}
    for name, percentile in PERCENTILES.items():
        found[name] = histogram.get_value_at_percentile(percentile) / 1000 if values_s else math.nan
    found["max"] = histogram.get_max_value() / 1000 if values_s else math.nan
    return found


async def _open_loop(clients: list[BenchCustomer], deliveries: Deliveries, rate: float, seconds: float) -> OpenLoop:
    """Messages at `rate` on a timetable of Poisson arrivals, each from a socket picked at random, sent at its time
    without waiting for earlier acks; latencies from the timetable's time."""
    rng = random.Random(7)
    timetable: list[float] = []
    at = rng.expovariate(max(rate, 1.0))
    while at < seconds:
        timetable.append(at)
        at += rng.expovariate(max(rate, 1.0))
    start = time.time()
    intended: dict[str, float] = {}
    pending: list[asyncio.Future[None]] = []
    for offset in timetable:
        await asyncio.sleep(max(0.0, start + offset - time.time()))
        client = clients[rng.randrange(len(clients))]
        tag, waiter = await client.send_nowait()
        intended[tag] = start + offset
        pending.append(waiter)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(30):
            await asyncio.gather(*pending, return_exceptions=True)
    await _all_delivered(clients, deliveries, 30)
    acked_at = {t: a for c in clients for t, a in c.acked_at.items()}
    delivered = [deliveries.at[t] - when for t, when in intended.items() if t in deliveries.at]
    acks = [acked_at[t] - when for t, when in intended.items() if t in acked_at]
    return OpenLoop(
        rate=len(timetable) / seconds,
        tags=list(intended),
        delivered=len(delivered),
        latency_ms=hdr_summary(delivered),
        ack_ms=hdr_summary(acks),
    )
