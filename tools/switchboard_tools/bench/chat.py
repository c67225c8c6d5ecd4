"""Sustained accept rate of the chat adapter next to a raw aiokafka produce loop, on this machine.

    KAFKA_BOOTSTRAP=127.0.0.1:19092 REDIS_URL=redis://127.0.0.1:16379/0 python -m switchboard_tools.bench.chat

The adapter runs as its own process (`python -m switchboard.chat`) on a fresh topic prefix; widget clients and
webhook senders run here. Every rate counts only messages the adapter acknowledged, i.e. after Kafka's ack.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from websockets.asyncio.client import connect

from switchboard.chat.signing import widget_token
from switchboard.contracts import Channel, InboundMessage
from switchboard.runtime.signing import signed_headers
from switchboard_tools.benchkit import (
    RAW_LINE,
    adapter_under_test,
    bench_parser,
    latency_note,
    print_rate,
    raw_produce,
)

SECRET = "bench-secret"
TEXT = "你好，我想问一下这件衣服有没有M码，什么时候能发货？"


RAW_RECORD = InboundMessage(
    message_id="x" * 32, tenant_id="shop-a", conversation_id="c" * 37, channel=Channel.CHANNEL_CHAT, text=TEXT
).SerializeToString()
"""An InboundMessage of the size the widget sends, for the raw produce loop."""


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


async def main(args: argparse.Namespace) -> None:
    """Run the three measurements and print them."""
    async with adapter_under_test(
        "switchboard.chat",
        args.partitions,
        SB_CHAT_TENANT_SECRETS=json.dumps({"shop-a": SECRET}),
        # The benchmark measures the accept path, not the limits that protect it.
        SB_CHAT_CONN_RATE_PER_S="1000000",
        SB_CHAT_CONN_BURST="1000000",
        SB_CHAT_CUSTOMER_RATE_PER_WINDOW="1000000",
    ) as adapter:
        adapter.print_header("chat adapter", args.seconds, args.partitions)
        print_rate(RAW_LINE, await raw_produce(adapter.bootstrap, adapter.raw_topic, RAW_RECORD, args.seconds))
        rate, latencies = await widget_clients(f"{adapter.ws_url}/chat/v1/ws", args.clients, args.window, args.seconds)
        print_rate(f"chat widget ({args.clients} sockets, window {args.window})", rate, latency_note("ack", latencies))
        print_rate(
            f"chat webhook ({args.senders} concurrent senders, HMAC-signed)",
            await webhook_senders(adapter.base_url, args.senders, args.seconds),
        )


def cli() -> None:
    """Parse arguments and run."""
    parser = bench_parser("python -m switchboard_tools.bench.chat", __doc__)
    parser.add_argument("--clients", type=int, default=20, help="widget sockets")
    parser.add_argument("--window", type=int, default=20, help="unacknowledged messages per socket")
    parser.add_argument("--senders", type=int, default=16, help="concurrent webhook requests")
    asyncio.run(main(parser.parse_args()))


if __name__ == "__main__":
    cli()
