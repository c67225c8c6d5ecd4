"""The load generator's HTTP client: one pooled aiohttp ClientSession per run, shared by every simulated agent's
desk login and desk socket, every simulated customer's widget socket and platform webhook, the phone streams and
the operator's surge calls. HTTP requests reuse kept-alive connections; a websocket holds its own while open
(loadgen/sockets.py), so the pool sets no cap: a bench opens thousands of sockets to one host.

    async with run_session() as http:
        async with http.post(url, data=body, headers=headers) as resp:
            ...
"""

from __future__ import annotations

import aiohttp

# Every request of a run has this deadline unless it passes its own (an open websocket is not bound by it).
TIMEOUT_S = 30.0
# What a request of the run may raise: the client's errors, and its deadline.
HTTP_ERRORS: tuple[type[BaseException], ...] = (aiohttp.ClientError, TimeoutError)


def run_session(timeout_s: float = TIMEOUT_S) -> aiohttp.ClientSession:
    """The run's client session (use as `async with`: its connections close with it)."""
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_s))
