"""The pipeline under load: chat widget → chat adapter → Kafka → router → desk outbox → gateway → agent desktop.

One shop, agents with room for every conversation and direct assignment (no offers), customers that each hold one
conversation open. After a warm-up (every conversation assigned), two phases:
- *maximum*: every customer sends its next message as soon as the previous one was acknowledged, for a while;
  the delivery rate at the desktops is the pipeline's maximum on this machine;
- *half rate*: customers send on a fixed timetable at half that maximum; the send → desktop latencies of this
  phase are the latency figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import string
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from switchboard.chat.signing import widget_token
from switchboard_tools.loadgen.agents import SimulatedAgent
from switchboard_tools.loadgen.customers import Endpoints
from switchboard_tools.loadgen.fixtures import Credentials
from switchboard_tools.loadgen.probes import TAG, RoutingProbe
from switchboard_tools.loadgen.scenario import Scenario
from switchboard_tools.loadgen.schedule import AgentShift
from switchboard_tools.loadgen.stats import latency_summary

TENANT = "lg-bench"


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


class BenchCustomer:
    """One widget socket that sends tagged messages and awaits each ack."""

    def __init__(self, endpoints: Endpoints, creds: Credentials, index: int) -> None:
        self.customer_id = f"bench-{index:04d}"
        secret = creds.chat_secret(TENANT).encode()
        query = urlencode(
            {"tenant": TENANT, "customer": self.customer_id, "token": widget_token(secret, self.customer_id)}
        )
        self.url = endpoints.chat_http.replace("http://", "ws://", 1) + f"/chat/v1/ws?{query}"
        self.ws: ClientConnection | None = None
        self.sent_at: dict[str, float] = {}
        self.acked = 0
        self._acks: dict[str, asyncio.Future[None]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._rng = random.Random(index)

    async def open(self) -> None:
        """Connect the widget."""
        self.ws = await connect(self.url, open_timeout=30)
        self._reader = asyncio.create_task(self._read(self.ws))

    async def _read(self, ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for raw in ws:
                frame = json.loads(raw)
                waiter = self._acks.pop(str(frame.get("client_msg_id", "")), None)
                if waiter is not None and not waiter.done():
                    if frame.get("type") == "ack":
                        waiter.set_result(None)
                    else:
                        waiter.set_exception(RuntimeError(f"refused: {frame}"))

    async def send(self) -> None:
        """Send one message and wait for its ack."""
        assert self.ws is not None
        tag = "".join(self._rng.choices(string.ascii_lowercase, k=10))
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._acks[tag] = waiter
        self.sent_at[tag] = time.time()
        frame = {"type": "message", "client_msg_id": tag, "kind": "text", "text": f"在吗 [lg:{tag}]"}
        await self.ws.send(json.dumps(frame, ensure_ascii=False))
        async with asyncio.timeout(30):
            await waiter
        self.acked += 1

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
    half_rate_per_s: float
    half_latency_s: dict[str, float]
    half_delivered: int
    half_sent: int
    half_stages_s: dict[str, dict[str, float]]
    # CPU seconds the bench's own process (customers, agents, probe) used per second of the maximum phase: near
    # 1.0 means the generator, not the pipeline, set the maximum.
    generator_cpu_share: float


async def pipeline(endpoints: Endpoints, creds: Credentials, seconds: float, customers: int = 64) -> PipelineFigures:
    """Warm up, then the maximum and the half-rate phase."""
    scenario = bench_scenario(agents=8, slots=max(8, customers // 4))
    deliveries = Deliveries()
    shifts = [AgentShift(TENANT, f"{TENANT}-a{i:03d}", 0.0, None, i) for i in range(8)]
    leave = asyncio.Event()
    probe = RoutingProbe(endpoints.kafka_bootstrap, endpoints.topic_prefix, [TENANT])
    await probe.start()
    clients = [BenchCustomer(endpoints, creds, i) for i in range(customers)]
    async with httpx.AsyncClient(timeout=30) as http:
        agents = [
            SimulatedAgent(
                s, scenario.agents, creds.agent_password(TENANT, s.agent_id), endpoints.gateway_http, deliveries
            )
            for s in shifts
        ]
        tasks = [asyncio.create_task(a.run(http, leave)) for a in agents]
        try:
            await asyncio.gather(*(c.open() for c in clients))
            await asyncio.gather(*(c.send() for c in clients))
            await _all_delivered(clients, deliveries, 30)
            cpu_before, wall_before = time.process_time(), time.time()
            maximum = await _maximum(clients, deliveries, probe, seconds)
            cpu_share = (time.process_time() - cpu_before) / (time.time() - wall_before)
            half = await _half_rate(clients, deliveries, maximum[0] / 2, seconds)
            stages = _stage_latencies(clients, deliveries, probe, half[4])
        finally:
            leave.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
            await probe.stop()
    return PipelineFigures(*maximum, half[0], half[1], half[2], half[3], stages, cpu_share)


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
) -> tuple[float, float, float, float]:
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
    return len(in_window) / span, acked / span, len(inbound) / span, len(decisions) / span


async def _half_rate(
    clients: list[BenchCustomer], deliveries: Deliveries, rate: float, seconds: float
) -> tuple[float, dict[str, float], int, int, list[str]]:
    interval = len(clients) / max(rate, 1.0)
    start = time.time()
    sent: list[str] = []

    async def loop(index: int, client: BenchCustomer) -> None:
        # Spread the customers' timetables evenly over one interval, so the total is a steady `rate`.
        next_at = start + interval * index / len(clients)
        while next_at - start < seconds:
            await asyncio.sleep(max(0.0, next_at - time.time()))
            before = set(client.sent_at)
            await client.send()
            sent.extend(set(client.sent_at) - before)
            next_at += interval

    await asyncio.gather(*(loop(i, c) for i, c in enumerate(clients)))
    await _all_delivered(clients, deliveries, 30)
    sent_at = {t: at for c in clients for t, at in c.sent_at.items()}
    latencies = [deliveries.at[t] - sent_at[t] for t in sent if t in deliveries.at]
    return rate, latency_summary(latencies), len(latencies), len(sent), sent
