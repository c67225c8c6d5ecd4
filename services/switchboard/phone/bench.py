"""Sustained accept rate of the phone adapter next to a raw aiokafka produce loop, on this machine.

    KAFKA_BOOTSTRAP=127.0.0.1:19092 REDIS_URL=redis://127.0.0.1:16379/0 python -m switchboard.phone.bench

The adapter runs as its own process (`python -m switchboard.phone`, dev directory) on a fresh topic prefix; the
telephony platforms run here. Rates count final segments the adapter acknowledged, i.e. after Kafka's ack.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from websockets.asyncio.client import connect

from switchboard.contracts import Channel, InboundMessage
from switchboard.runtime.kafka import ensure_topics
from switchboard.runtime.topics import Topics
from switchboard.stack.procs import free_port

KEY = {"X-Api-Key": "dev-phone-shop-a"}
HOTLINE = "400-800-1001"
TEXT = "你好，我上周买的外套还没有发货，订单号是 202311110000123456，能帮我查一下吗？"


async def raw_produce(bootstrap: str, topic: str, seconds: float) -> float:
    """Messages/s of an idempotent acks=all producer sending pipelined batches of transcript-sized records."""
    value = InboundMessage(
        message_id="x" * 32, tenant_id="shop-a", conversation_id="c" * 29, channel=Channel.CHANNEL_PHONE, text=TEXT
    ).SerializeToString()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all", linger_ms=5)
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


def _segment(call_id: str, seq: int) -> dict[str, Any]:
    return {
        "type": "segment",
        "call_id": call_id,
        "seq": seq,
        "speaker": "customer",
        "text": TEXT,
        "start_ms": seq * 1000,
        "end_ms": seq * 1000 + 900,
        "confidence": 0.9,
    }


def _started(call_id: str) -> dict[str, Any]:
    return {"type": "call.started", "call_id": call_id, "caller": "13812345678", "dialled_number": HOTLINE}


async def ws_platforms(url: str, sockets: int, calls: int, per_frame: int, seconds: float) -> tuple[float, list[float]]:
    """Final segments/s acked over `sockets` connections, each streaming `calls` calls with one frame in flight each."""
    latencies: list[float] = []
    acked = 0
    stop_at = time.perf_counter() + seconds

    async def platform(n: int) -> None:
        nonlocal acked
        async with connect(url, additional_headers=KEY, max_queue=None) as ws:
            ids = [f"ws{n}-{c}-{uuid.uuid4().hex[:6]}" for c in range(calls)]
            await ws.send(json.dumps({"id": "start", "items": [_started(c) for c in ids]}))
            await ws.recv()
            seqs = dict.fromkeys(ids, 1)
            sent_at: dict[str, float] = {}

            async def send(call_id: str) -> None:
                first = seqs[call_id]
                seqs[call_id] += per_frame
                frame_id = f"{call_id}/{first}"
                sent_at[frame_id] = time.perf_counter()
                items = [_segment(call_id, s) for s in range(first, first + per_frame)]
                await ws.send(json.dumps({"id": frame_id, "items": items}, ensure_ascii=False))

            for call_id in ids:
                await send(call_id)
            while sent_at:
                frame = json.loads(await ws.recv())
                started = sent_at.pop(frame["id"])
                if frame["type"] == "ack":
                    acked += len(frame["results"])
                    latencies.append(time.perf_counter() - started)
                if time.perf_counter() < stop_at:
                    await send(frame["id"].rsplit("/", 1)[0])

    began = time.perf_counter()
    await asyncio.gather(*(platform(n) for n in range(sockets)))
    return acked / (time.perf_counter() - began), latencies


async def http_senders(base: str, senders: int, per_batch: int, seconds: float) -> float:
    """Final segments/s acked by `POST /v1/phone/events` from `senders` concurrent senders, one call each."""
    accepted = 0
    stop_at = time.perf_counter() + seconds

    async def one(client: httpx.AsyncClient, n: int) -> None:
        nonlocal accepted
        call_id = f"http{n}-{uuid.uuid4().hex[:6]}"
        await client.post("/v1/phone/events", json=[_started(call_id)])
        seq = 1
        while time.perf_counter() < stop_at:
            items = [_segment(call_id, s) for s in range(seq, seq + per_batch)]
            seq += per_batch
            response = await client.post("/v1/phone/events", json={"items": items})
            if response.status_code == 200:
                accepted += per_batch

    began = time.perf_counter()
    async with httpx.AsyncClient(base_url=base, headers=KEY, limits=httpx.Limits(max_connections=senders)) as client:
        await asyncio.gather(*(one(client, n) for n in range(senders)))
    return accepted / (time.perf_counter() - began)


async def _start_adapter(bootstrap: str, redis_url: str, prefix: str, port: int) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP": bootstrap,
        "REDIS_URL": redis_url,
        "SB_TOPIC_PREFIX": prefix,
        "SB_KEY_PREFIX": prefix.rstrip("."),
        "SB_HTTP_PORT": str(port),
        "SB_HTTP_HOST": "127.0.0.1",
        "SB_LOG_LEVEL": "WARNING",
    }
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "switchboard.phone", env=env)
    async with httpx.AsyncClient() as http:
        for _ in range(300):
            try:
                if (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                    return proc
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    proc.terminate()
    raise RuntimeError("phone adapter did not become ready")


def _line(what: str, rate: float, extra: str = "") -> None:
    print(f"{what:<62} {rate:>9.0f} msg/s{extra}", flush=True)


async def main(args: argparse.Namespace) -> None:
    """Run the measurements and print them."""
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    topics = Topics(prefix)
    await ensure_topics(bootstrap, topics.specs(args.partitions))
    port = free_port()
    proc = await _start_adapter(bootstrap, redis_url, prefix, port)
    try:
        print(f"phone adapter accept rate, {args.seconds:.0f}s each, {args.partitions} partitions, on {bootstrap}")
        _line(
            "raw aiokafka produce loop (acks=all, idempotent)", await raw_produce(bootstrap, topics.dlq, args.seconds)
        )
        rate, latencies = await ws_platforms(
            f"ws://127.0.0.1:{port}/v1/phone/stream", args.sockets, args.calls, args.per_frame, args.seconds
        )
        cuts = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
        _line(
            f"phone websocket ({args.sockets}x{args.calls} calls, {args.per_frame} finals/frame)",
            rate,
            f"   frame ack p50 {cuts[49] * 1000:.1f} ms  p99 {cuts[98] * 1000:.1f} ms",
        )
        _line(
            f"phone HTTP batches ({args.senders} senders, {args.per_batch} finals/batch)",
            await http_senders(f"http://127.0.0.1:{port}", args.senders, args.per_batch, args.seconds),
        )
        _line(
            f"phone HTTP single segments ({args.senders} senders)",
            await http_senders(f"http://127.0.0.1:{port}", args.senders, 1, args.seconds),
        )
    finally:
        proc.terminate()
        await proc.wait()
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.delete_topics([s.name for s in topics.specs()])
        finally:
            await admin.close()


def cli() -> None:
    """Parse arguments and run."""
    parser = argparse.ArgumentParser(prog="python -m switchboard.phone.bench", description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--sockets", type=int, default=4, help="platform websockets")
    parser.add_argument("--calls", type=int, default=25, help="calls streamed per socket, one frame in flight each")
    parser.add_argument("--per-frame", type=int, default=1, help="final segments per websocket frame")
    parser.add_argument("--senders", type=int, default=16, help="concurrent HTTP senders")
    parser.add_argument("--per-batch", type=int, default=20, help="final segments per HTTP batch")
    parser.add_argument("--partitions", type=int, default=3)
    asyncio.run(main(parser.parse_args()))


if __name__ == "__main__":
    cli()
