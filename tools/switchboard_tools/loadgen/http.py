"""The load generator's HTTP client: one pooled aiohttp ClientSession per run, shared by every simulated agent's
desk login, every platform webhook a simulated customer sends and the operator's surge calls. Thousands of
simulated customers post over a few dozen kept-alive connections instead of a connection each.

    async with run_session() as http:
        async with http.post(url, data=body, headers=headers) as resp:
            ...
"""

from __future__ import annotations

import aiohttp

# Connections to one service at once; a request beyond them waits for one within its own deadline.
PER_HOST = 64
# Every request of a run has this deadline unless it passes its own.
TIMEOUT_S = 30.0
# What a request of the run may raise: the client's errors, and its deadline.
HTTP_ERRORS: tuple[type[BaseException], ...] = (aiohttp.ClientError, TimeoutError)


def run_session(timeout_s: float = TIMEOUT_S) -> aiohttp.ClientSession:
    """The run's client session (use as `async with`: its connections close with it)."""
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=PER_HOST)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_s))
