"""Websocket stacks side by side: the server the services run (uvicorn with `websockets-sansio`, as FastAPI's
websocket routes) against aiohttp's, and the client the load generator uses (`websockets`) against aiohttp's.

    python -m switchboard_tools.bench.websockets [--sockets 200] [--messages 100] [--deflate]

Each server echoes every text frame. Each client process opens `--sockets` sockets and sends `--messages` desk-event
sized JSON frames on each, one after the other (the next once the echo is back). Server and client run as separate
processes on uvloop; their CPU time is read from /proc, so each pairing prints the round trips per second and the
CPU-µs per round trip of the server and of the client, with per-message deflate as the services configure it
(`SB_HTTP_WS_DEFLATE`, on by default) or off; and what the server holds per open socket once the round trips are
done and the sockets stay open (its resident memory then, less before, per socket): the desk and widget sockets
spend hours idle, thousands to a process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time

import uvicorn
import uvloop
from fastapi import FastAPI, WebSocket, WebSocketDisconnect

from switchboard_tools.loadgen.cpu import cpu_seconds, resident_kib
from switchboard_tools.stack.procs import free_port

FRAME = json.dumps(
    {
        "type": "event",
        "seq": 1234,
        "event": "message",
        "conversation_id": "chat-7f3c2a9e1b4d4c6f8a0e2d1c3b5a7f90",
        "message": {
            "message_id": "m-0123456789abcdef",
            "text": "这件衣服有XL码吗？今天下单什么时候能发货",
            "kind": "text",
        },
    },
    ensure_ascii=False,
)
SERVERS = ("uvicorn", "aiohttp")
WARM_UP_SOCKETS = 20
CLIENTS = ("websockets", "aiohttp")


def _serve_uvicorn(port: int, deflate: bool) -> None:
    # FastAPI reads the handler's annotations by name from this module: WebSocket is imported at the top.
    app = FastAPI()

    @app.websocket("/ws")
    async def echo(ws: WebSocket) -> None:
        await ws.accept()
        try:
            while True:
                await ws.send_text(await ws.receive_text())
        except WebSocketDisconnect:
            return

    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        ws="websockets-sansio",
        ws_per_message_deflate=deflate,
        loop="uvloop",
    )
    uvicorn.Server(config).run()


def _serve_aiohttp(port: int, deflate: bool) -> None:
    from aiohttp import WSMsgType, web

    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=deflate)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await ws.send_str(msg.data)
        return ws

    app = web.Application()
    app.router.add_get("/ws", echo)
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


class _Hold:
    """Every socket, its round trips done, stays open until the bench has read the server's memory."""

    def __init__(self, sockets: int) -> None:
        self._left = sockets
        self.all_done = asyncio.Event()
        self.release = asyncio.Event()

    async def done(self) -> None:
        self._left -= 1
        if self._left == 0:
            self.all_done.set()
        await self.release.wait()


async def _client_websockets(url: str, sockets: int, messages: int, deflate: bool, hold: _Hold) -> None:
    from websockets.asyncio.client import connect

    async def one() -> None:
        async with connect(url, compression="deflate" if deflate else None, max_queue=None) as ws:
            for _ in range(messages):
                await ws.send(FRAME)
                await ws.recv()
            await hold.done()

    await asyncio.gather(*(one() for _ in range(sockets)))


async def _client_aiohttp(url: str, sockets: int, messages: int, deflate: bool, hold: _Hold) -> None:
    import aiohttp

    # No cap on connections: every socket stays open until all are done.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def one() -> None:
            async with session.ws_connect(url, compress=15 if deflate else 0) as ws:
                for _ in range(messages):
                    await ws.send_str(FRAME)
                    await ws.receive_str()
                await hold.done()

        await asyncio.gather(*(one() for _ in range(sockets)))


async def _client(client: str, url: str, args: argparse.Namespace) -> dict[str, float]:
    """Run the round trips; once all are done print a line and hold the sockets open until a line comes on stdin.
    The figures: wall and CPU seconds until the last round trip."""
    hold = _Hold(args.sockets)
    run = _client_websockets if client == "websockets" else _client_aiohttp
    cpu, wall = time.process_time(), time.monotonic()
    task = asyncio.create_task(run(url, args.sockets, args.messages, args.deflate, hold))
    await hold.all_done.wait()
    figures = {"seconds": time.monotonic() - wall, "cpu": time.process_time() - cpu}
    print("held", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    hold.release.set()
    await task
    return figures


async def _wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


def _pair(server: str, client: str, args: argparse.Namespace) -> tuple[float, float, float, float]:
    """Round trips/s, server and client CPU-µs per round trip, and the server's KiB per open socket, of one
    pairing."""
    port = free_port()
    me = [sys.executable, "-m", "switchboard_tools.bench.websockets"]
    flags = ["--deflate"] if args.deflate else []
    srv = subprocess.Popen([*me, "--serve", server, "--port", str(port), *flags])
    try:
        uvloop.run(_wait_port(port))
        # A warm-up on a few sockets (imports, first calls), not on all: the memory of sockets closed stays with the
        # server's allocator and would be reused by the measured ones.
        warm_up = ["--client", client, "--port", str(port), "--sockets", str(min(WARM_UP_SOCKETS, args.sockets))]
        subprocess.run([*me, *warm_up, "--messages", "5", *flags], check=True, capture_output=True, input=b"\n")
        cli_args = ["--client", client, "--port", str(port), "--sockets", str(args.sockets)]
        server_before, rss_before = cpu_seconds(srv.pid) or 0.0, resident_kib(srv.pid)
        cli = subprocess.Popen(
            [*me, *cli_args, "--messages", str(args.messages), *flags],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert cli.stdin is not None and cli.stdout is not None
        if cli.stdout.readline().strip() != "held":
            raise RuntimeError(f"the {client} client failed against {server}")
        server_cpu = (cpu_seconds(srv.pid) or 0.0) - server_before
        per_socket_kib = (resident_kib(srv.pid) - rss_before) / args.sockets
        out, _ = cli.communicate("\n", timeout=60)
        if cli.returncode:
            raise RuntimeError(f"the {client} client failed against {server}")
        measured = json.loads(out.strip().splitlines()[-1])
        elapsed, client_cpu = measured["seconds"], measured["cpu"]
    finally:
        srv.terminate()
        srv.wait(10)
    trips = args.sockets * args.messages
    return trips / elapsed, server_cpu * 1e6 / trips, client_cpu * 1e6 / trips, per_socket_kib


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m switchboard_tools.bench.websockets`."""
    parser = argparse.ArgumentParser(prog="python -m switchboard_tools.bench.websockets", description=__doc__)
    parser.add_argument("--sockets", type=int, default=200)
    parser.add_argument("--messages", type=int, default=100, help="round trips per socket")
    parser.add_argument("--deflate", action="store_true", help="per-message deflate on (the services' default)")
    parser.add_argument("--serve", choices=SERVERS, help=argparse.SUPPRESS)
    parser.add_argument("--client", choices=CLIENTS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        (_serve_uvicorn if args.serve == "uvicorn" else _serve_aiohttp)(args.port, args.deflate)
        return 0
    url = f"ws://127.0.0.1:{args.port}/ws"
    if args.client:
        print(json.dumps(uvloop.run(_client(args.client, url, args))))
        return 0
    print(
        f"websocket stacks: {args.sockets} sockets x {args.messages} round trips of a {len(FRAME.encode())}-byte "
        f"frame, deflate {'on' if args.deflate else 'off'}, {os.cpu_count()} cores",
        flush=True,
    )
    print(
        f"  {'server':8} {'client':10} {'round trips/s':>14} {'server µs/trip':>15} {'client µs/trip':>15}"
        f" {'server KiB/open socket':>23}"
    )
    for server in SERVERS:
        for client in CLIENTS:
            rate, server_us, client_us, kib = _pair(server, client, args)
            print(f"  {server:8} {client:10} {rate:14.0f} {server_us:15.0f} {client_us:15.0f} {kib:23.1f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
