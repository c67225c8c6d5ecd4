"""What the adapter benchmarks share: the adapter as its own process, the raw produce loop, the printed figures.

Each `python -m switchboard_tools.bench.<adapter>` measures its own clients; this module starts the adapter on a fresh
topic prefix, measures the raw aiokafka ceiling next to it, prints lines in one format and cleans up afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from switchboard.runtime.kafka import ensure_topics, kafka_options_for
from switchboard.runtime.topics import Topics, TopicSpec
from switchboard_tools.stack.procs import free_port

RAW_LINE = "raw aiokafka produce loop (acks=all, idempotent)"


def bench_parser(prog: str, description: str | None) -> argparse.ArgumentParser:
    """An argument parser with the options every adapter benchmark has: --seconds and --partitions."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--partitions", type=int, default=3)
    return parser


async def raw_produce(bootstrap: str, topic: str, value: bytes, seconds: float) -> float:
    """Messages/s of an idempotent acks=all producer sending pipelined batches of `value`."""
    producer = AIOKafkaProducer(**kafka_options_for(bootstrap), enable_idempotence=True, acks="all", linger_ms=5)
    await producer.start()
    sent = 0
    try:
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            futures = [await producer.send(topic, value, key=f"c{(sent + i) % 500}".encode()) for i in range(500)]
            await asyncio.gather(*futures)
            sent += len(futures)
        return sent / (time.perf_counter() - started)
    finally:
        await producer.stop()


def latency_note(what: str, latencies: list[float]) -> str:
    """`   <what> p50 … ms  p99 … ms`, to follow a rate on its line."""
    cuts = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    return f"   {what} p50 {cuts[49] * 1000:.1f} ms  p99 {cuts[98] * 1000:.1f} ms"


def print_rate(what: str, rate: float, extra: str = "", width: int = 58) -> None:
    """One figure: what was measured, its rate, and an optional note such as `latency_note`."""
    print(f"{what:<{width}} {rate:>9.0f} msg/s{extra}", flush=True)


@dataclass(frozen=True)
class AdapterUnderTest:
    """A running adapter process and where to reach it."""

    bootstrap: str
    prefix: str
    port: int
    raw_topic: str

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:<port>`."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        """`ws://127.0.0.1:<port>`."""
        return f"ws://127.0.0.1:{self.port}"

    def print_header(self, what: str, seconds: float, partitions: int) -> None:
        """The first line of the report: which adapter, for how long, on which broker."""
        print(f"{what} accept rate, {seconds:.0f}s each, {partitions} partitions, on {self.bootstrap}")


@asynccontextmanager
async def adapter_under_test(module: str, partitions: int, **env: str) -> AsyncIterator[AdapterUnderTest]:
    """Run `python -m <module>` on a fresh topic prefix (plus a raw topic) until the block ends, then clean up.

    `env` adds the adapter's own settings (SB_…) to the connection and port variables every service takes.
    """
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    topics = Topics(prefix)
    raw_topic = prefix + "bench.raw"
    await ensure_topics(bootstrap, [*topics.specs(partitions), TopicSpec(raw_topic, partitions)])
    port = free_port()
    proc = await _start(
        module,
        {
            **os.environ,
            "KAFKA_BOOTSTRAP": bootstrap,
            "REDIS_URL": redis_url,
            "SB_TOPIC_PREFIX": prefix,
            "SB_KEY_PREFIX": prefix.rstrip("."),
            "SB_HTTP_PORT": str(port),
            "SB_HTTP_HOST": "127.0.0.1",
            "SB_LOG_LEVEL": "WARNING",
            **env,
        },
        port,
    )
    try:
        yield AdapterUnderTest(bootstrap, prefix, port, raw_topic)
    finally:
        proc.terminate()
        await proc.wait()
        admin = AIOKafkaAdminClient(**kafka_options_for(bootstrap))
        await admin.start()
        try:
            await admin.delete_topics([raw_topic, *(s.name for s in topics.specs())])
        finally:
            await admin.close()


async def _start(module: str, env: dict[str, str], port: int) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", module, env=env)
    async with httpx.AsyncClient() as http:
        for _ in range(300):
            try:
                if (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                    return proc
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    proc.terminate()
    raise RuntimeError(f"{module} did not become ready")
