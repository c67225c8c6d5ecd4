"""SIGTERM drains a gateway process's desks gradually: readiness goes 503 at once, sockets close with 1012 spread over
SB_DESK_DRAIN_S (desks still work until their turn), a socket arriving meanwhile is sent away with 1012, exit 0."""

from __future__ import annotations

import asyncio
import signal
import time

import httpx
import pytest
from redis.asyncio import Redis
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from switchboard.gateway.drain import drain_rate
from switchboard.gateway.protocol import CloseCode
from switchboard.runtime.kafka import RecordProducer
from switchboard.runtime.settings import ServiceSettings
from switchboard.state.roster import load_roster
from switchboard_tools.stack.procs import free_port
from tests.helpers import eventually, service_env, start_service, stop_service
from tests.integration.gateway_support import ORIGIN, SECRET, Desk, load_agents, token

pytestmark = [pytest.mark.broker]

WINDOW_S = 3.0


async def closed_at(desk: Desk) -> tuple[int | None, float]:
    """The close code the server sent and when it arrived (monotonic)."""
    code = await desk.close_code(timeout=30)
    return code, time.monotonic()


def test_the_pace_covers_the_window_and_never_crawls() -> None:
    assert drain_rate(20_000, 30, 100) == pytest.approx(20_000 / 30)
    assert drain_rate(10, 30, 100) == 100  # a handful of desks does not wait out the window
    assert drain_rate(10, 0, 100) == float("inf")


async def test_sigterm_moves_desks_away_a_few_at_a_time(settings: ServiceSettings, redis: Redis) -> None:
    producer = RecordProducer(settings)
    await producer.start()
    await load_agents(settings, redis, producer)
    await producer.stop()
    agents = [(t.tenant_id, a.agent_id) for t in load_roster().tenants for a in t.agents]
    port, internal = free_port(), free_port()
    env = service_env(
        settings,
        port,
        SB_SERVICE_NAME="gateway",
        SB_INTERNAL_PORT=str(internal),
        SB_JWT_SECRET=SECRET,
        SB_ALLOWED_ORIGINS=f'["{ORIGIN}"]',
        SB_DESK_DRAIN_S=str(WINDOW_S),
        SB_DESK_DRAIN_MIN_RATE="1",
        SB_SHUTDOWN_GRACE_S="5",
    )
    proc, _ = await start_service("switchboard.gateway", env)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{internal}", timeout=2) as http:
            url = f"ws://127.0.0.1:{port}/desk"
            desks = [await Desk.open(url, token(tenant, agent)) for tenant, agent in agents]
            last = desks[-1]  # the newest socket is closed last: it still works while the others go
            watchers = [asyncio.create_task(closed_at(desk)) for desk in desks[:-1]]

            proc.send_signal(signal.SIGTERM)
            started = time.monotonic()

            async def not_ready() -> bool:
                return (await http.get("/readyz")).status_code == 503

            await eventually(not_ready, 2, "readiness 503 once draining")
            # A desk that still lands here (endpoints lag) is sent on at once.
            async with connect(url, origin=ORIGIN) as late:  # type: ignore[arg-type]
                with pytest.raises(ConnectionClosed) as refused:
                    await asyncio.wait_for(late.recv(), 5)
            assert refused.value.rcvd is not None and refused.value.rcvd.code == CloseCode.SERVICE_RESTART
            beat = await last.command({"type": "heartbeat", "id": "still-here"})
            assert beat["type"] == "result", beat

            closes = await asyncio.gather(*watchers)
            last_code, last_at = await closed_at(last)
        assert {code for code, _ in closes} | {last_code} == {CloseCode.SERVICE_RESTART}
        times = sorted(at - started for _, at in [*closes, (last_code, last_at)])
        # Spread over the window (the dev roster's desks over 3 s), not all in the same instant.
        assert times[-1] - times[0] >= WINDOW_S / 2, times
        assert times[-1] <= WINDOW_S + 1.5, times
        in_first_second = sum(1 for at in times if at - times[0] < 1.0)
        assert in_first_second <= len(times) // 2, times
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        await stop_service(proc)
