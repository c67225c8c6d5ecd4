"""`switchboard bench`: the raw limits of this machine, then the pipeline, each stage beside its raw limit.

Everything runs from this one command in one process group: Kafka and Redis (those of KAFKA_BOOTSTRAP / REDIS_URL,
or started here), the services as children, the raw measurements and the simulated customers and agents in this
process. The goals (docs/loadtest.md, "Benchmark") are printed beside the figures, met or not.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import uvloop

from switchboard_tools.loadgen.benchpipe import (
    AGENTS,
    CLOSED_LOOP_SOCKETS,
    OPEN_LOOP_SOCKETS,
    PipelineFigures,
    bench_agents,
    bench_scenario,
    pipeline,
)
from switchboard_tools.loadgen.customers import Endpoints
from switchboard_tools.loadgen.fixtures import Credentials, write_stack_config
from switchboard_tools.loadgen.localstack import local_stack
from switchboard_tools.loadgen.rawlimits import Rate, kafka_passthrough, redis_evalsha, websocket_echo
from switchboard_tools.loadgen.schedule import Schedule
from switchboard_tools.loadgen.settings import LoadgenSettings

# The bench measures the pipeline, not the flood protection: lift the widget's rate limits, and the desk's command
# rate (a bench agent holds hundreds of conversations and reads every message, far above a person's pace; over the
# limit the gateway closes its desk 4029 and its conversations' messages reach nobody).
UNLIMITED = {
    "SB_CHAT_CONN_RATE_PER_S": "100000",
    "SB_CHAT_CONN_BURST": "100000",
    "SB_CHAT_CUSTOMER_RATE_PER_WINDOW": "10000000",
    "SB_COMMAND_RATE": "100000",
    "SB_COMMAND_BURST": "100000",
}


async def measure(
    endpoints: Endpoints, creds: Credentials, seconds: float, sockets: int, profile: Path | None = None
) -> dict[str, Any]:
    """Raw limits, then the pipeline; every figure as one mapping."""
    kafka = await kafka_passthrough(endpoints.kafka_bootstrap, seconds)
    redis = await redis_evalsha(endpoints.redis_url, seconds)
    echo = await websocket_echo(seconds)
    figures = await pipeline(endpoints, creds, seconds * 2, open_sockets=sockets, profile=profile)
    return table(kafka, redis, echo, figures)


# Goals (docs/loadtest.md, "Benchmark"): each printed beside what was measured, met or not.
P50_GOAL_MS = 15.0
P99_GOAL_MS = 50.0
RATE_GOAL_PER_S = 5000.0
KAFKA_SHARE_GOAL = 0.1
KAFKA_SHARE_LONG_TERM = 0.5


def table(kafka: Rate, redis: Rate, echo: Rate, p: PipelineFigures) -> dict[str, Any]:
    """Each stage's rate, the raw limit it is compared with, and the ratio; the open-loop latencies; CPU per
    message; the goals."""
    stages = [
        ("chat adapter acks (widget → Kafka ack)", p.max_acked_per_s, echo),
        ("inbound topic records", p.max_inbound_per_s, kafka),
        ("routing decisions (Lua claim scripts)", p.max_decisions_per_s, redis),
        ("desk deliveries (gateway → desktop)", p.max_delivered_per_s, echo),
        ("end-to-end (customer send → desktop)", p.max_delivered_per_s, kafka),
    ]
    lat = p.open_latency_ms
    share = p.max_delivered_per_s / kafka.per_s if kafka.per_s else 0.0
    return {
        "raw": {r.name: {"count": r.count, "seconds": r.seconds, "per_s": r.per_s} for r in (kafka, redis, echo)},
        "stages": [
            {"stage": name, "per_s": rate, "raw": raw.name, "raw_per_s": raw.per_s, "ratio": rate / raw.per_s}
            for name, rate, raw in stages
        ],
        "open_loop": {
            "rate_per_s": p.open_rate_per_s,
            "sockets": p.open_sockets,
            "sent": p.open_sent,
            "delivered": p.open_delivered,
            "latency_ms": lat,
            "ack_ms": p.open_ack_ms,
            "stages_ms": {name: _ms(figures) for name, figures in p.open_stages_s.items()},
        },
        "cpu_us_per_message": {"maximum": p.cpu_us_max, "open_loop": p.cpu_us_open},
        "generator_cpu_share": p.generator_cpu_share,
        "goals": {
            f"p50 < {P50_GOAL_MS:.0f} ms at half the maximum": lat["p50"] < P50_GOAL_MS,
            f"p99 < {P99_GOAL_MS:.0f} ms at half the maximum": lat["p99"] < P99_GOAL_MS,
            f"maximum ≥ {RATE_GOAL_PER_S:.0f}/s": p.max_delivered_per_s >= RATE_GOAL_PER_S,
            f"maximum ≥ {KAFKA_SHARE_GOAL} × raw Kafka": share >= KAFKA_SHARE_GOAL,
            f"maximum ≥ {KAFKA_SHARE_LONG_TERM} × raw Kafka (long term)": share >= KAFKA_SHARE_LONG_TERM,
            "nothing lost in the open loop": p.open_delivered == p.open_sent,
        },
    }


def _ms(figures: dict[str, float]) -> dict[str, float]:
    return {k: (v * 1000 if k != "count" else v) for k, v in figures.items()}


def render(result: dict[str, Any]) -> str:
    """The table a person reads."""
    lines = [f"{'stage':<44}{'per s':>10}  {'raw limit':<24}{'raw per s':>10}  ratio"]
    for raw_name, raw in result["raw"].items():
        lines.append(f"{'raw: ' + raw_name:<44}{raw['per_s']:>10.0f}")
    for s in result["stages"]:
        lines.append(f"{s['stage']:<44}{s['per_s']:>10.0f}  {s['raw']:<24}{s['raw_per_s']:>10.0f}  {s['ratio']:.3f}")
    opened = result["open_loop"]
    lat, ack = opened["latency_ms"], opened["ack_ms"]
    lines.append(
        f"open loop at half the maximum ({opened['rate_per_s']:.0f}/s Poisson over {opened['sockets']} sockets, "
        f"{opened['delivered']}/{opened['sent']} delivered), from each message's time on the timetable:"
    )
    for name, figures in (("end-to-end (send → desktop)", lat), ("widget ack", ack)):
        lines.append(
            f"  {name:<28} p50 {figures['p50']:7.1f} ms  p90 {figures['p90']:7.1f} ms  p99 {figures['p99']:7.1f} ms"
            f"  p99.9 {figures['p99.9']:7.1f} ms  max {figures['max']:7.1f} ms"
        )
    for name, figures in opened["stages_ms"].items():
        lines.append(f"  {name:<36} p50 {figures['p50']:7.1f} ms  p99 {figures['p99']:7.1f} ms")
    for phase, figures in result["cpu_us_per_message"].items():
        parts = ", ".join(f"{name} {us:.0f}" for name, us in figures.items() if name != "total")
        lines.append(f"CPU-µs per delivered message ({phase}): total {figures.get('total', math.nan):.0f} = {parts}")
    lines.append(f"load generator CPU during the maximum phase: {result['generator_cpu_share']:.0%} of one core")
    goals = ", ".join(f"{name}: {'met' if met else 'NOT met'}" for name, met in result["goals"].items())
    lines.append(f"goals: {goals}")
    return "\n".join(lines)


def bench(seconds: float, sockets: int | None = None, profile: Path | None = None) -> int:
    """Run the benchmark on a stack of its own; print the table; write bench.json. Exit 0 when it ran."""
    settings = LoadgenSettings(loadgen_scenario="smoke")
    slots = (CLOSED_LOOP_SOCKETS + (sockets or OPEN_LOOP_SOCKETS)) // AGENTS + 1
    scenario = bench_scenario(agents=AGENTS, slots=slots)
    schedule = Schedule(scenario="bench", seed=0, conversations=(), agents=bench_agents(), surges=())
    creds = Credentials(settings.loadgen_run_key)
    folder = Path(settings.loadgen_out) / f"bench-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
    env = {**write_stack_config(scenario, schedule, creds, folder / "stack-config"), **UNLIMITED}
    run_id = f"lg{int(time.time()) % 10**8:08d}"
    with local_stack(folder / "stack", env, run_id, settings.loadgen_partitions) as endpoints:
        result = uvloop.run(measure(endpoints, creds, seconds, sockets or OPEN_LOOP_SOCKETS, profile))
    text = render(result)
    print(text)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bench.json").write_text(json.dumps(result, indent=1))
    (folder / "bench.txt").write_text(text + "\n")
    print(f"figures: {folder / 'bench.json'}")
    if profile is not None:
        print(f"flame graphs of the maximum phase: {profile}/<service>.svg (hottest functions: <service>.txt)")
    return 0
