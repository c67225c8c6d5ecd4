"""A connect burst of widget sockets: every socket is accepted (its `hello` arrives), or refused only by the
configured socket limit with its own close code and reason. The Redis pool is shared by all sockets and waits for
a free connection rather than failing (runtime/redis_client.py); the issue saw 20-33 % of 2,000 refused with 1013
when the pool ran out."""

from __future__ import annotations

import asyncio
import collections
import json
import time
from collections.abc import Callable

import pytest
from websockets.exceptions import ConnectionClosed

from switchboard.chat.signing import widget_token
from switchboard.chat.widget import CLOSE_SOCKET_LIMIT, SOCKET_LIMIT_REASON
from switchboard.runtime.settings import ServiceSettings
from switchboard_tools.stack.procs import free_port
from tests.helpers import service_env, start_service, stop_service
from tests.integration.chat_service import connect

pytestmark = [pytest.mark.broker]


class _Burst:
    """Sockets that each wait, once answered, until every socket of the burst has been answered: they are all
    open together, as in a real burst."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.answered = 0
        self.all_answered = asyncio.Event()

    def _answer(self) -> None:
        self.answered += 1
        if self.answered == self.count:
            self.all_answered.set()

    async def one(self, url: str) -> str:
        """`hello`, or the close code and reason the server gave instead."""
        answered = False
        try:
            async with connect(url, open_timeout=60, close_timeout=5) as ws:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 60))
                answered = True
                self._answer()
                if frame.get("type") != "hello":
                    return f"frame {frame.get('type')}"
                await asyncio.wait_for(self.all_answered.wait(), 120)
                return "hello"
        except ConnectionClosed as exc:
            rcvd = exc.rcvd
            return f"close {rcvd.code} {rcvd.reason}" if rcvd is not None else "closed without a code"
        except (OSError, TimeoutError) as exc:
            return f"error {type(exc).__name__}"
        finally:
            if not answered:
                self._answer()


async def burst(count: int, url_of: Callable[[str], str]) -> collections.Counter[str]:
    """Open `count` widget sockets at once (distinct customers); what each got, counted."""
    sockets = _Burst(count)
    return collections.Counter(await asyncio.gather(*(sockets.one(url_of(f"burst-{i}")) for i in range(count))))


async def _burst_against_chat(settings: ServiceSettings, count: int, **env: str) -> collections.Counter[str]:
    """A burst against a chat process of its own (as deployed: its loop serves sockets only, not these clients)."""
    port = free_port()
    secret = "burst-secret-0123456789"
    proc, _ = await start_service(
        "switchboard.chat",
        service_env(
            settings, port, SB_SERVICE_NAME="chat", SB_CHAT_TENANT_SECRETS=json.dumps({"shop-a": secret}), **env
        ),
    )
    try:

        def url(customer: str) -> str:
            token = widget_token(secret.encode(), customer)
            return f"ws://127.0.0.1:{port}/chat/v1/ws?tenant=shop-a&customer={customer}&token={token}"

        return await burst(count, url)
    finally:
        await stop_service(proc)


async def test_a_connect_burst_far_beyond_the_redis_pool_is_accepted_whole(settings: ServiceSettings) -> None:
    """400 sockets at once on a pool of 20 connections (the test below runs 2,000 on the default 100). A connect
    waits for a pool connection (up to SB_REDIS_POOL_WAIT_S, 30 s); with 5 s, 229 of these 400 (and 1,900 of 2,000
    on 100) were refused on a loaded 2-core machine."""
    outcomes = await _burst_against_chat(settings, 400, SB_REDIS_MAX_CONNECTIONS="20")
    print(f"connect burst of 400 widget sockets, 20 Redis connections: {dict(outcomes)}")
    assert outcomes == {"hello": 400}


async def test_sockets_beyond_the_configured_limit_are_refused_with_their_own_reason(
    settings: ServiceSettings,
) -> None:
    outcomes = await _burst_against_chat(settings, 150, SB_CHAT_MAX_SOCKETS="100")
    assert outcomes == {"hello": 100, f"close {CLOSE_SOCKET_LIMIT} {SOCKET_LIMIT_REASON}": 50}


async def test_a_connect_burst_of_2000_widget_sockets_is_accepted_whole(settings: ServiceSettings) -> None:
    started = time.monotonic()
    outcomes = await _burst_against_chat(settings, 2000)
    took = time.monotonic() - started
    print(f"connect burst of 2,000 widget sockets, default settings: {dict(outcomes)} in {took:.1f} s")
    assert outcomes == {"hello": 2000}
