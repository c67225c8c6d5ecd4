"""Sustained accept rate of the e-mail adapter next to a raw aiokafka produce loop, on this machine.

    KAFKA_BOOTSTRAP=127.0.0.1:19092 REDIS_URL=redis://127.0.0.1:16379/0 python -m switchboard_tools.bench.email

The adapter runs as its own process (`python -m switchboard.email`) on a fresh topic prefix; SMTP clients (one
connection each, one transaction after the other, as an MTA delivers) and webhook senders run here. Every rate
counts only messages answered 250 / 202, i.e. after Kafka's ack.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from email.message import EmailMessage

import aiosmtplib
import httpx

# The chat benchmark's record, so the raw figures of both benchmarks compare.
from switchboard.email.settings import dev_webhook_secrets
from switchboard.runtime.signing import signed_headers
from switchboard_tools.bench.chat import RAW_RECORD
from switchboard_tools.benchkit import (
    RAW_LINE,
    adapter_under_test,
    bench_parser,
    latency_note,
    print_rate,
    raw_produce,
)
from switchboard_tools.stack.procs import free_port

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

    # The bench's stack runs with the development webhook secrets (config/email/dev-webhook-secrets.yaml).
    secret = dev_webhook_secrets()["shop-a"].encode()

    async def one(client: httpx.AsyncClient, n: int) -> None:
        nonlocal accepted
        i = 0
        while time.perf_counter() < stop_at:
            raw = _mail(n * 1_000_000 + i)
            i += 1
            headers = {"Content-Type": "message/rfc822", **signed_headers(secret, int(time.time()), raw)}
            response = await client.post("/v1/email/inbound/shop-a", content=raw, headers=headers)
            accepted += response.status_code == 202

    began = time.perf_counter()
    async with httpx.AsyncClient(base_url=base, limits=httpx.Limits(max_connections=senders), timeout=30) as client:
        await asyncio.gather(*(one(client, n) for n in range(senders)))
    return accepted / (time.perf_counter() - began)


async def main(args: argparse.Namespace) -> None:
    """Run the three measurements and print them."""
    smtp_port = free_port()
    async with adapter_under_test(
        "switchboard.email", args.partitions, SB_SMTP_HOST="127.0.0.1", SB_SMTP_PORT=str(smtp_port)
    ) as adapter:
        adapter.print_header("email adapter", args.seconds, args.partitions)
        print_rate(RAW_LINE, await raw_produce(adapter.bootstrap, adapter.raw_topic, RAW_RECORD, args.seconds))
        rate, latencies = await smtp_clients(smtp_port, args.clients, args.seconds)
        print_rate(
            f"email SMTP ({args.clients} connections, multipart/alternative)",
            rate,
            latency_note("250 after DATA", latencies),
        )
        print_rate(
            f"email webhook ({args.senders} concurrent senders, raw RFC 5322)",
            await webhook_senders(adapter.base_url, args.senders, args.seconds),
        )


def cli() -> None:
    """Parse arguments and run."""
    parser = bench_parser("python -m switchboard_tools.bench.email", __doc__)
    parser.add_argument("--clients", type=int, default=16, help="SMTP connections")
    parser.add_argument("--senders", type=int, default=16, help="concurrent webhook requests")
    asyncio.run(main(parser.parse_args()))


if __name__ == "__main__":
    cli()
