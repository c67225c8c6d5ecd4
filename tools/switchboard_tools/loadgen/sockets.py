"""The load generator's websocket client: widget, phone-stream and desk sockets on aiohttp, over the run's pooled
ClientSession (loadgen/http.py). Text frames only. Iterating a socket yields its frames until it closes (either
side, cleanly or not; `close_code` says how); sending on a closed socket raises SocketClosed.

aiohttp's client costs less CPU per frame than `websockets` (`python -m switchboard_tools.bench.websockets`), and
on the 2-core machine the load generator shares the CPU with what it measures.

    async with open_socket(http, "ws://127.0.0.1:8000/desk") as ws:
        await ws.send(json.dumps(auth))
        async for raw in ws:
            ...
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import aiohttp
from aiohttp import WSMsgType

# The largest frame a socket takes (a desk's snapshot of a busy agent), as the services allow.
MAX_FRAME_BYTES = 2**22
# A clean close waits this long for the server's close frame.
CLOSE_TIMEOUT_S = 10.0
OPEN_TIMEOUT_S = 20.0


class SocketClosed(ConnectionError):
    """The socket closed before a frame could be sent."""


# What opening or using a socket may raise: refused or broken connections, a failed handshake, its deadline.
SOCKET_ERRORS: tuple[type[BaseException], ...] = (OSError, aiohttp.ClientError, TimeoutError)


class Socket:
    """One open client websocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws

    @property
    def close_code(self) -> int | None:
        """The close code once the socket closed (the server's, or 1006 for a connection that broke)."""
        return self._ws.close_code

    async def send(self, text: str) -> None:
        """Send one text frame; SocketClosed when the socket is closed or closing."""
        if self._ws.closed:
            raise SocketClosed(f"socket closed ({self._ws.close_code})")
        try:
            await self._ws.send_str(text)
        except ConnectionError as exc:
            raise SocketClosed(str(exc)) from exc

    def __aiter__(self) -> AsyncIterator[str]:
        return self._frames()

    async def _frames(self) -> AsyncIterator[str]:
        async for message in self._ws:
            if message.type is WSMsgType.TEXT:
                yield message.data
            elif message.type is WSMsgType.BINARY:
                yield message.data.decode("utf-8", "replace")
            elif message.type is WSMsgType.ERROR:
                return

    async def close(self) -> None:
        """Close cleanly (1000), waiting up to CLOSE_TIMEOUT_S for the server's close frame."""
        await self._ws.close()


async def connect_socket(
    http: aiohttp.ClientSession,
    url: str,
    headers: Mapping[str, str] | None = None,
    open_timeout_s: float = OPEN_TIMEOUT_S,
) -> Socket:
    """Open a websocket (permessage-deflate offered, as browsers do); raises one of SOCKET_ERRORS."""
    async with asyncio.timeout(open_timeout_s):
        ws = await http.ws_connect(
            url,
            headers=headers,
            compress=15,
            max_msg_size=MAX_FRAME_BYTES,
            timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=CLOSE_TIMEOUT_S),
        )
    return Socket(ws)


@asynccontextmanager
async def open_socket(
    http: aiohttp.ClientSession,
    url: str,
    headers: Mapping[str, str] | None = None,
    open_timeout_s: float = OPEN_TIMEOUT_S,
) -> AsyncIterator[Socket]:
    """`connect_socket` as a context: closed when the block ends."""
    sock = await connect_socket(http, url, headers, open_timeout_s)
    try:
        yield sock
    finally:
        await sock.close()
