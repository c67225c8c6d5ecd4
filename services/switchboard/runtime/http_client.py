"""The outgoing HTTP client of a service process: one pooled aiohttp ClientSession for every call a service makes
to another system: the shops' order and customer lookups (runtime/http_lookup.py), the platforms' reply callbacks
(chat/callbacks.py) and the board's forwards to presence (gateway/board.py). It is made at the first call, in the
running event loop, and ServiceRuntime closes it when the service stops. Deadlines are the caller's: each call
passes its own (`aiohttp.ClientTimeout`, or an `asyncio.timeout` around it).

    async with shared_session().get(url, timeout=aiohttp.ClientTimeout(total=2.0)) as response:
        body = await response.json()
"""

from __future__ import annotations

import asyncio

import aiohttp

# Connections to one host at once (a call waiting for a free one waits within its own deadline); no overall cap.
PER_HOST = 100
# An idle connection is closed after this long (a shop's system behind a load balancer drops idle ones anyway).
KEEPALIVE_S = 30.0

_sessions: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}


def shared_session() -> aiohttp.ClientSession:
    """The process's client session for the running event loop (made at the first call)."""
    loop = asyncio.get_running_loop()
    session = _sessions.get(loop)
    if session is None or session.closed:
        for gone in [other for other in _sessions if other.is_closed()]:
            del _sessions[gone]
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=PER_HOST, keepalive_timeout=KEEPALIVE_S)
        session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None))
        _sessions[loop] = session
    return session


async def close_shared_session() -> None:
    """Close the running loop's session and its connections (a later call makes a new one)."""
    session = _sessions.pop(asyncio.get_running_loop(), None)
    if session is not None:
        await session.close()
