"""One desktop-simulating process of the gateway benchmark: opens many sockets, counts the events they get.

Run by `python -m switchboard_tools.bench.gateway`; speaks JSON lines on stdout, stops at stdin EOF.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from switchboard.gateway.limits import raise_open_files
from switchboard.gateway.tokens import issue_token
from switchboard_tools.bench.gateway_roster import agent_of

EVENT_PREFIX = '{"type":"event","seq":'


def _report(**fields: object) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


async def _open(args: argparse.Namespace, index: int, gate: asyncio.Semaphore) -> ClientConnection | None:
    tenant, agent = agent_of(index, args.tenants)
    token = issue_token(args.secret, tenant, agent, 3600)
    async with gate:
        for attempt in range(8):
            try:
                ws = await connect(
                    args.url,
                    compression="deflate" if args.deflate else None,
                    ping_interval=None,
                    open_timeout=120,
                    max_queue=64,
                )
                await ws.send(json.dumps({"type": "auth", "token": token}))
                frame = json.loads(await ws.recv())
                if frame.get("type") == "snapshot":
                    return ws
                await ws.close()
            except (OSError, TimeoutError, ConnectionClosed, InvalidHandshake):
                await asyncio.sleep(0.2 * (attempt + 1))
    return None


async def _read(ws: ClientConnection, counts: list[int], ack_every: int) -> None:
    since_ack = 0
    with contextlib.suppress(ConnectionClosed):
        async for raw in ws:
            if isinstance(raw, str) and raw.startswith(EVENT_PREFIX):
                counts[0] += 1
                since_ack += 1
                if ack_every and since_ack >= ack_every:
                    since_ack = 0
                    seq = raw[len(EVENT_PREFIX) : raw.index(",", len(EVENT_PREFIX))]
                    await ws.send('{"type":"ack","seq":' + seq + "}")


async def main() -> None:
    """Open the sockets, report, count events until stdin closes."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--start", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--tenants", type=int, required=True)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--ack-every", type=int, default=20)
    parser.add_argument("--deflate", action="store_true")
    args = parser.parse_args()
    raise_open_files(args.count + 1024)
    gate = asyncio.Semaphore(args.concurrency)
    started = time.monotonic()
    opened = await asyncio.gather(*(_open(args, i, gate) for i in range(args.start, args.start + args.count)))
    sockets = [ws for ws in opened if ws is not None]
    failed = [args.start + i for i, ws in enumerate(opened) if ws is None]
    _report(connected=len(sockets), failed=failed, seconds=round(time.monotonic() - started, 2))
    counts = [0]
    readers = [asyncio.create_task(_read(ws, counts, args.ack_every)) for ws in sockets]
    stdin_closed = asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    while not stdin_closed.done():
        _report(events=counts[0], at=time.time())
        await asyncio.wait([stdin_closed], timeout=0.2)
    for task in readers:
        task.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    for ws in sockets:
        ws.transport.abort()


if __name__ == "__main__":
    asyncio.run(main())
