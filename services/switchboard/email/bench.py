"""Sustained accept rate of the e-mail adapter next to a raw aiokafka produce loop, on this machine.

    KAFKA_BOOTSTRAP=127.0.0.1:19092 REDIS_URL=redis://127.0.0.1:16379/0 python -m switchboard.email.bench

The adapter runs as its own process (`python -m switchboard.email`) on a fresh topic prefix; SMTP clients (one
connection each, one transaction after the other, as an MTA delivers) and webhook senders run here. Every rate
counts only messages answered 250 / 202, i.e. after Kafka's ack.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from email.message import EmailMessage

import aiosmtplib
import httpx
from aiokafka.admin import AIOKafkaAdminClient

from switchboard.chat.bench import raw_produce
from switchboard.runtime.kafka import ensure_topics
from switchboard.runtime.topics import Topics, TopicSpec
from switchboard.stack.procs import free_port

RECIPIENT = "service@shop-a.inbound.switchboard.local"
TEXT = "您好，我上周买的外套还没有发货，订单号 2024111100123，请问什么时候能发？谢谢！"


def _template() -> bytes:
    msg = EmailMessage()
    msg["From"] = "buyer@customer.example"
    msg["To"] = RECIPIENT
    msg["Subject"] = "发货咨询"
    msg["Message-ID"] = "<MSGID@customer.example>"
    msg.set_content(TEXT)
    msg.add_alternative(f"<p>{TEXT}</p>", subtype="html")
    return msg.as_bytes()


_TEMPLATE = _template()


def _mail(n: int) -> bytes:
    # Built once and stamped with a fresh Message-ID, so the client side spends its CPU on sending, not composing.
    return _TEMPLATE.replace(b"MSGID", f"{uuid.uuid4().hex}.{n}".encode())


async def smtp_clients(port: int, clients: int, seconds: float) -> tuple[float, list[float]]:
    """Messages/s answered 250 over `clients` connections, and each DATA's latency."""
    latencies: list[float] = []
    accepted = 0
    stop_at = time.perf_counter() + seconds

    async def one(n: int) -> None:
        nonlocal accepted
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=30)
        await client.connect()
        try:
            i = 0
            while time.perf_counter() < stop_at:
                raw = _mail(n * 1_000_000 + i)
                i += 1
                began = time.perf_counter()
                await client.mail("buyer@customer.example")
                await client.rcpt(RECIPIENT)
                if (await client.data(raw)).code == 250:
                    accepted += 1
                    latencies.append(time.perf_counter() - began)
        finally:
            await client.quit()

    began = time.perf_counter()
    await asyncio.gather(*(one(n) for n in range(clients)))
    return accepted / (time.perf_counter() - began), latencies


async def webhook_senders(base: str, senders: int, seconds: float) -> float:
    """Messages/s answered 202 by the inbound webhook with `senders` requests in flight."""
    accepted = 0
    stop_at = time.perf_counter() + seconds

    async def one(client: httpx.AsyncClient, n: int) -> None:
        nonlocal accepted
        i = 0
        while time.perf_counter() < stop_at:
            raw = _mail(n * 1_000_000 + i)
            i += 1
            response = await client.post("/v1/email/inbound", content=raw, headers={"Content-Type": "message/rfc822"})
            accepted += response.status_code == 202

    began = time.perf_counter()
    async with httpx.AsyncClient(base_url=base, limits=httpx.Limits(max_connections=senders), timeout=30) as client:
        await asyncio.gather(*(one(client, n) for n in range(senders)))
    return accepted / (time.perf_counter() - began)


async def _start_adapter(
    bootstrap: str, redis_url: str, prefix: str, port: int, smtp_port: int
) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP": bootstrap,
        "REDIS_URL": redis_url,
        "SB_TOPIC_PREFIX": prefix,
        "SB_KEY_PREFIX": prefix.rstrip("."),
        "SB_HTTP_PORT": str(port),
        "SB_HTTP_HOST": "127.0.0.1",
        "SB_SMTP_HOST": "127.0.0.1",
        "SB_SMTP_PORT": str(smtp_port),
        "SB_LOG_LEVEL": "WARNING",
    }
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "switchboard.email", env=env)
    async with httpx.AsyncClient() as http:
        for _ in range(300):
            try:
                if (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                    return proc
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    proc.terminate()
    raise RuntimeError("email adapter did not become ready")


async def main(args: argparse.Namespace) -> None:
    """Run the three measurements and print them."""
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    topics = Topics(prefix)
    raw_topic = prefix + "bench.raw"
    await ensure_topics(bootstrap, [*topics.specs(args.partitions), TopicSpec(raw_topic, args.partitions)])
    port, smtp_port = free_port(), free_port()
    proc = await _start_adapter(bootstrap, redis_url, prefix, port, smtp_port)
    try:
        print(f"email adapter accept rate, {args.seconds:.0f}s each, {args.partitions} partitions, on {bootstrap}")
        raw = await raw_produce(bootstrap, raw_topic, args.seconds)
        print(f"{'raw aiokafka produce loop (acks=all, idempotent)':<58} {raw:>9.0f} msg/s", flush=True)
        rate, latencies = await smtp_clients(smtp_port, args.clients, args.seconds)
        cuts = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
        print(
            f"{f'email SMTP ({args.clients} connections, multipart/alternative)':<58} {rate:>9.0f} msg/s"
            f"   250 after DATA p50 {cuts[49] * 1000:.1f} ms  p99 {cuts[98] * 1000:.1f} ms",
            flush=True,
        )
        hook = await webhook_senders(f"http://127.0.0.1:{port}", args.senders, args.seconds)
        print(f"{f'email webhook ({args.senders} concurrent senders, raw RFC 5322)':<58} {hook:>9.0f} msg/s")
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
    parser = argparse.ArgumentParser(prog="python -m switchboard.email.bench", description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=16, help="SMTP connections")
    parser.add_argument("--senders", type=int, default=16, help="concurrent webhook requests")
    parser.add_argument("--partitions", type=int, default=3)
    asyncio.run(main(parser.parse_args()))


if __name__ == "__main__":
    cli()
