"""Sustained accept rate of the phone adapter next to a raw aiokafka produce loop, on this machine.

    KAFKA_BOOTSTRAP=127.0.0.1:19092 REDIS_URL=redis://127.0.0.1:16379/0 python -m switchboard_tools.bench.phone

The adapter runs as its own process (`python -m switchboard.phone`, dev directory) on a fresh topic prefix; the
telephony platforms run here. Rates count final segments the adapter acknowledged, i.e. after Kafka's ack.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from typing import Any

import httpx
from websockets.asyncio.client import connect

from switchboard.contracts import Channel, InboundMessage
from switchboard_tools.benchkit import (
    RAW_LINE,
    adapter_under_test,
    bench_parser,
    latency_note,
    print_rate,
    raw_produce,
)

KEY = {"X-Api-Key": "dev-phone-shop-a"}
HOTLINE = "400-800-1001"
TEXT = "你好，我上周买的外套还没有发货，订单号是 202311110000123456，能帮我查一下吗？"


RAW_RECORD = InboundMessage(
    message_id="x" * 32, tenant_id="shop-a", conversation_id="c" * 29, channel=Channel.CHANNEL_PHONE, text=TEXT
).SerializeToString()
"""An InboundMessage of a transcript segment's size, for the raw produce loop."""


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


def _line(what: str, rate: float, extra: str = "") -> None:
    print_rate(what, rate, extra, width=62)


async def main(args: argparse.Namespace) -> None:
    """Run the measurements and print them."""
    async with adapter_under_test("switchboard.phone", args.partitions) as adapter:
        adapter.print_header("phone adapter", args.seconds, args.partitions)
        _line(RAW_LINE, await raw_produce(adapter.bootstrap, adapter.raw_topic, RAW_RECORD, args.seconds))
        rate, latencies = await ws_platforms(
            f"{adapter.ws_url}/v1/phone/stream", args.sockets, args.calls, args.per_frame, args.seconds
        )
        _line(
            f"phone websocket ({args.sockets}x{args.calls} calls, {args.per_frame} finals/frame)",
            rate,
            latency_note("frame ack", latencies),
        )
        _line(
            f"phone HTTP batches ({args.senders} senders, {args.per_batch} finals/batch)",
            await http_senders(adapter.base_url, args.senders, args.per_batch, args.seconds),
        )
        _line(
            f"phone HTTP single segments ({args.senders} senders)",
            await http_senders(adapter.base_url, args.senders, 1, args.seconds),
        )


def cli() -> None:
    """Parse arguments and run."""
    parser = bench_parser("python -m switchboard_tools.bench.phone", __doc__)
    parser.add_argument("--sockets", type=int, default=4, help="platform websockets")
    parser.add_argument("--calls", type=int, default=25, help="calls streamed per socket, one frame in flight each")
    parser.add_argument("--per-frame", type=int, default=1, help="final segments per websocket frame")
    parser.add_argument("--senders", type=int, default=16, help="concurrent HTTP senders")
    parser.add_argument("--per-batch", type=int, default=20, help="final segments per HTTP batch")
    asyncio.run(main(parser.parse_args()))


if __name__ == "__main__":
    cli()
