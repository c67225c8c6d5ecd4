"""Sustained accept rate of the chat adapter next to a raw aiokafka produce loop, on this machine.

    KAFKA_BOOTSTRAP=127.0.0.1:19092 REDIS_URL=redis://127.0.0.1:16379/0 python -m switchboard.chat.bench

The adapter runs as its own process (`python -m switchboard.chat`) on a fresh topic prefix; widget clients and
webhook senders run here. Every rate counts only messages the adapter acknowledged, i.e. after Kafka's ack.
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
from collections.abc import Awaitable, Callable

import httpx
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from websockets.asyncio.client import connect

from switchboard.chat.signing import signed_headers, widget_token
from switchboard.contracts import Channel, InboundMessage
from switchboard.runtime.kafka import ensure_topics
from switchboard.runtime.topics import Topics, TopicSpec
from switchboard.stack.procs import free_port

SECRET = "bench-secret"
TEXT = "你好，我想问一下这件衣服有没有M码，什么时候能发货？"


async def raw_produce(bootstrap: str, topic: str, seconds: float) -> float:
    """Messages/s of an idempotent acks=all producer sending pipelined batches of InboundMessage-sized records."""
    value = InboundMessage(
        message_id="x" * 32, tenant_id="shop-a", conversation_id="c" * 37, channel=Channel.CHANNEL_CHAT, text=TEXT
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


async def widget_clients(base_ws: str, clients: int, window: int, seconds: float) -> tuple[float, list[float]]:
    """Messages/s acked over `clients` sockets, each keeping up to `window` messages unacknowledged."""
    latencies: list[float] = []
    acked = 0
    stop_at = time.perf_counter() + seconds

    async def one(n: int) -> None:
        nonlocal acked
        customer = f"bench-{n}"
        url = f"{base_ws}?tenant=shop-a&customer={customer}&token={widget_token(SECRET.encode(), customer)}"
        async with connect(url, max_queue=None) as ws:
            await ws.recv()  # hello
            sent_at: dict[str, float] = {}
            seq = 0
            while time.perf_counter() < stop_at or sent_at:
                while len(sent_at) < window and time.perf_counter() < stop_at:
                    mid = f"m{seq}"
                    seq += 1
                    sent_at[mid] = time.perf_counter()
                    await ws.send(json.dumps({"type": "message", "client_msg_id": mid, "text": TEXT}))
                frame = json.loads(await ws.recv())
                if frame["type"] in ("ack", "error"):
                    started = sent_at.pop(frame["client_msg_id"], None)
                    if frame["type"] == "ack" and started is not None:
                        acked += 1
                        latencies.append(time.perf_counter() - started)

    began = time.perf_counter()
    await asyncio.gather(*(one(n) for n in range(clients)))
    return acked / (time.perf_counter() - began), latencies


async def webhook_senders(base: str, senders: int, seconds: float) -> float:
    """Messages/s accepted by the webhook from `senders` concurrent keep-alive connections.

    A bare HTTP/1.1 client on asyncio streams: an HTTP client library costs more CPU per request than the adapter
    does, and on a 2-core machine it would measure itself.
    """
    host, port = base.removeprefix("http://").split(":")
    accepted = 0
    stop_at = time.perf_counter() + seconds

    async def one(n: int) -> None:
        nonlocal accepted
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            i = 0
            while time.perf_counter() < stop_at:
                i += 1
                body = json.dumps(
                    {
                        "event_id": f"e{n}-{i}",
                        "message_id": f"p{n}-{i}",
                        "customer_id": f"tb-{n}-{i % 20}",
                        "text": TEXT,
                    },
                    ensure_ascii=False,
                ).encode()
                signed = signed_headers(SECRET.encode(), int(time.time()), body)
                head = (
                    f"POST /chat/v1/webhook/shop-a HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in signed.items()) + "\r\n"
                )
                writer.write(head.encode() + body)
                status_line = await reader.readline()
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
                accepted += status_line.split()[1] == b"200"
        finally:
            writer.close()
            await writer.wait_closed()

    began = time.perf_counter()
    await asyncio.gather(*(one(n) for n in range(senders)))
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
        "SB_CHAT_TENANT_SECRETS": json.dumps({"shop-a": SECRET}),
        # The benchmark measures the accept path, not the limits that protect it.
        "SB_CHAT_CONN_RATE_PER_S": "1000000",
        "SB_CHAT_CONN_BURST": "1000000",
        "SB_CHAT_CUSTOMER_RATE_PER_WINDOW": "1000000",
    }
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "switchboard.chat", env=env)
    async with httpx.AsyncClient() as http:
        for _ in range(300):
            try:
                if (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                    return proc
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    proc.terminate()
    raise RuntimeError("chat adapter did not become ready")


async def _timed(what: str, run: Callable[[], Awaitable[float]]) -> float:
    rate = await run()
    print(f"{what:<58} {rate:>9.0f} msg/s", flush=True)
    return rate


async def main(args: argparse.Namespace) -> None:
    """Run the three measurements and print them."""
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    topics = Topics(prefix)
    raw_topic = prefix + "bench.raw"
    await ensure_topics(bootstrap, [*topics.specs(args.partitions), TopicSpec(raw_topic, args.partitions)])
    port = free_port()
    proc = await _start_adapter(bootstrap, redis_url, prefix, port)
    try:
        print(f"chat adapter accept rate, {args.seconds:.0f}s each, {args.partitions} partitions, on {bootstrap}")
        await _timed(
            "raw aiokafka produce loop (acks=all, idempotent)",
            lambda: raw_produce(bootstrap, raw_topic, args.seconds),
        )
        rate, latencies = await widget_clients(
            f"ws://127.0.0.1:{port}/chat/v1/ws", args.clients, args.window, args.seconds
        )
        cuts = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
        print(
            f"{f'chat widget ({args.clients} sockets, window {args.window})':<58} {rate:>9.0f} msg/s"
            f"   ack p50 {cuts[49] * 1000:.1f} ms  p99 {cuts[98] * 1000:.1f} ms",
            flush=True,
        )
        await _timed(
            f"chat webhook ({args.senders} concurrent senders, HMAC-signed)",
            lambda: webhook_senders(f"http://127.0.0.1:{port}", args.senders, args.seconds),
        )
    finally:
        proc.terminate()
        await proc.wait()
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.delete_topics([raw_topic, *(s.name for s in topics.specs())])
        finally:
            await admin.close()


def cli() -> None:
    """Parse arguments and run."""
    parser = argparse.ArgumentParser(prog="python -m switchboard.chat.bench", description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=20, help="widget sockets")
    parser.add_argument("--window", type=int, default=20, help="unacknowledged messages per socket")
    parser.add_argument("--senders", type=int, default=16, help="concurrent webhook requests")
    parser.add_argument("--partitions", type=int, default=3)
    asyncio.run(main(parser.parse_args()))


if __name__ == "__main__":
    cli()
