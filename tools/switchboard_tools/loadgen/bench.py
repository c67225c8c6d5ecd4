"""`switchboard bench`: the raw limits of this machine, then the pipeline, each stage beside its raw limit.

Everything runs from this one command in one process group: Kafka and Redis (those of KAFKA_BOOTSTRAP / REDIS_URL,
or started here), the services as children, the raw measurements and the simulated customers and agents in this
process. Goals (issue 7): end-to-end rate at least half the raw Kafka passthrough; p99 end-to-end latency under
50 ms at half the maximum rate. The figures are printed as measured, met or not.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from switchboard_tools.loadgen.benchpipe import TENANT, PipelineFigures, bench_scenario, pipeline
from switchboard_tools.loadgen.customers import Endpoints
from switchboard_tools.loadgen.fixtures import Credentials, write_stack_config
from switchboard_tools.loadgen.localstack import local_stack
from switchboard_tools.loadgen.rawlimits import Rate, kafka_passthrough, redis_evalsha, websocket_echo
from switchboard_tools.loadgen.schedule import AgentShift, Schedule
from switchboard_tools.loadgen.settings import LoadgenSettings

# The bench measures the pipeline, not the adapters' flood protection: lift the widget's rate limits.
UNLIMITED_CHAT = {
    "SB_CHAT_CONN_RATE_PER_S": "100000",
    "SB_CHAT_CONN_BURST": "100000",
    "SB_CHAT_CUSTOMER_RATE_PER_WINDOW": "10000000",
}


async def measure(endpoints: Endpoints, creds: Credentials, seconds: float) -> dict[str, Any]:
    """Raw limits, then the pipeline; every figure as one mapping."""
    kafka = await kafka_passthrough(endpoints.kafka_bootstrap, seconds)
    redis = await redis_evalsha(endpoints.redis_url, seconds)
    echo = await websocket_echo(seconds)
    figures = await pipeline(endpoints, creds, seconds * 2)
    return table(kafka, redis, echo, figures)


def table(kafka: Rate, redis: Rate, echo: Rate, p: PipelineFigures) -> dict[str, Any]:
    """Each stage's rate, the raw limit it is compared with, and the ratio."""
    stages = [
        ("chat adapter acks (widget → Kafka ack)", p.max_acked_per_s, echo),
        ("inbound topic records", p.max_inbound_per_s, kafka),
        ("routing decisions (Lua claim scripts)", p.max_decisions_per_s, redis),
        ("desk deliveries (gateway → desktop)", p.max_delivered_per_s, echo),
        ("end-to-end (customer send → desktop)", p.max_delivered_per_s, kafka),
    ]
    p99_ms = p.half_latency_s["p99"] * 1000
    return {
        "raw": {r.name: {"count": r.count, "seconds": r.seconds, "per_s": r.per_s} for r in (kafka, redis, echo)},
        "stages": [
            {"stage": name, "per_s": rate, "raw": raw.name, "raw_per_s": raw.per_s, "ratio": rate / raw.per_s}
            for name, rate, raw in stages
        ],
        "half_rate": {
            "rate_per_s": p.half_rate_per_s,
            "sent": p.half_sent,
            "delivered": p.half_delivered,
            "latency_ms": _ms(p.half_latency_s),
            "stages_ms": {name: _ms(figures) for name, figures in p.half_stages_s.items()},
        },
        "generator_cpu_share": p.generator_cpu_share,
        "goals": {
            "end_to_end_at_least_half_kafka": p.max_delivered_per_s >= 0.5 * kafka.per_s,
            "p99_under_50ms_at_half_rate": p99_ms < 50,
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
    half = result["half_rate"]
    lat = half["latency_ms"]
    lines.append(
        f"at half the maximum ({half['rate_per_s']:.0f}/s, {half['delivered']}/{half['sent']} delivered): "
        f"end-to-end p50 {lat['p50']:.1f} ms  p95 {lat['p95']:.1f} ms  p99 {lat['p99']:.1f} ms  max {lat['max']:.1f} ms"
    )
    for name, figures in half["stages_ms"].items():
        lines.append(f"  {name:<36} p50 {figures['p50']:7.1f} ms  p99 {figures['p99']:7.1f} ms")
    lines.append(f"load generator CPU during the maximum phase: {result['generator_cpu_share']:.0%} of one core")
    goals = result["goals"]
    lines.append(
        "goals: end-to-end ≥ ½ raw Kafka passthrough: "
        + ("met" if goals["end_to_end_at_least_half_kafka"] else "NOT met")
        + "; p99 < 50 ms at half rate: "
        + ("met" if goals["p99_under_50ms_at_half_rate"] else "NOT met")
    )
    return "\n".join(lines)


def bench(seconds: float) -> int:
    """Run the benchmark on a stack of its own; print the table; write bench.json. Exit 0 when it ran."""
    settings = LoadgenSettings(loadgen_scenario="smoke")
    scenario = bench_scenario(agents=8, slots=16)
    shifts = tuple(AgentShift(TENANT, f"{TENANT}-a{i:03d}", 0.0, None, i) for i in range(8))
    schedule = Schedule(scenario="bench", seed=0, conversations=(), agents=shifts, surges=())
    creds = Credentials(settings.loadgen_run_key)
    folder = Path(settings.loadgen_out) / f"bench-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
    env = {**write_stack_config(scenario, schedule, creds, folder / "stack-config"), **UNLIMITED_CHAT}
    run_id = f"lg{int(time.time()) % 10**8:08d}"
    with local_stack(folder / "stack", env, run_id, settings.loadgen_partitions) as endpoints:
        result = asyncio.run(measure(endpoints, creds, seconds))
    text = render(result)
    print(text)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bench.json").write_text(json.dumps(result, indent=1))
    (folder / "bench.txt").write_text(text + "\n")
    print(f"figures: {folder / 'bench.json'}")
    return 0
