"""Redis SIGKILLed and restarted empty while desks are connected: no desk is refused 4005 or closed; each is logged
in again on its behalf with a higher session epoch and gets a fresh snapshot, and its seq never goes backwards
(gateway/recovery.py, docs/state.md "When Redis loses its data").

Own Redis (killed here), the shared Kafka, presence as a process (it rebuilds the agents), the gateway in-process.
"""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import pytest
from redis.asyncio import Redis
from websockets.asyncio.client import connect
from websockets.typing import Origin

from switchboard.runtime.settings import ServiceSettings
from switchboard.state.agent_model import Status, status_desk_event
from switchboard.state.keys import Keys
from switchboard.state.outbox import append_desk_event
from switchboard_tools.stack.procs import free_port
from switchboard_tools.stack.redis import LocalRedis
from tests.helpers import service_env, start_service
from tests.integration.gateway_support import ORIGIN, Desk, gateway_settings, running_gateway, token

pytestmark = pytest.mark.broker

TENANT = "shop-a"


async def _presence(settings: ServiceSettings) -> asyncio.subprocess.Process:
    env = service_env(settings, free_port(), SB_SERVICE_NAME="presence", SB_SWEEP_INTERVAL_S="0.2")
    proc, _ = await start_service("switchboard.presence", env, timeout=60)
    return proc


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 20)


async def _next(desk: Desk, kind: str, timeout: float = 30.0) -> dict[str, Any]:
    """The next frame of a type (others skipped)."""
    async with asyncio.timeout(timeout):
        while True:
            frame = await desk.frame(timeout)
            if frame["type"] == kind:
                return frame


async def _open_slowly(url: str, auth_token: str) -> Desk:
    """Desk.open with a long wait for the snapshot (the gateway holds the socket while presence rebuilds)."""
    desk = Desk(await connect(url, origin=Origin(ORIGIN)))
    await desk.send({"type": "auth", "token": auth_token})
    desk.snapshot = await _next(desk, "snapshot", timeout=90)
    return desk


async def _status_event(redis: Redis, keys: Keys, agent: str) -> int:
    event = status_desk_event(TENANT, agent, Status.AVAILABLE, int(time.time() * 1000), "test", "poke")
    return await append_desk_event(redis, keys, event)


async def test_connected_and_connecting_desks_survive_redis_restarted_empty(
    settings: ServiceSettings, own_redis: LocalRedis
) -> None:
    settings = settings.model_copy(update={"redis_url": own_redis.url})
    keys = Keys(settings.key_prefix)
    presence = await _presence(settings)
    redis = Redis.from_url(own_redis.url)
    try:
        async with running_gateway(gateway_settings(settings, relogin_wait_s=60.0)) as gw:
            lina = await Desk.open(gw.url, token(TENANT, "a-lina"))
            epoch = lina.snapshot["session_epoch"]
            for _ in range(3):
                await _status_event(redis, keys, "a-lina")
            seen = (await lina.events(3))[-1]["seq"]
            assert seen >= 3

            # Presence is down while Redis comes back empty: nothing can log the desk in yet, and it must wait.
            await _stop(presence)
            killed = time.monotonic()
            await asyncio.to_thread(own_redis.restart, empty=True)
            wei_task = asyncio.create_task(_open_slowly(gw.url, token(TENANT, "a-wei")))
            await asyncio.sleep(2.0)
            assert not wei_task.done(), "a desk connecting before presence rebuilt must wait, not be refused"
            presence = await _presence(settings)

            fresh = await _next(lina, "snapshot", timeout=60)
            recovered_s = time.monotonic() - killed
            assert fresh["resumed"] is False
            assert fresh["session_epoch"] > epoch
            assert fresh["as_of_seq"] >= seen
            wei = await asyncio.wait_for(wei_task, 90)
            assert wei.snapshot["session_epoch"] >= 1

            await redis.aclose()
            redis = Redis.from_url(own_redis.url)  # the test's own connections died with the server
            beat = await lina.command({"type": "heartbeat", "id": "hb-1"})
            assert beat["type"] == "result", beat
            seq = await _status_event(redis, keys, "a-lina")
            (event,) = await lina.events(1)
            assert event["seq"] == seq == fresh["as_of_seq"] + 1 > seen
            print(f"desk recovered {recovered_s:.2f}s after Redis was killed (presence restarted in between)")
            await lina.close()
            await wei.close()
    finally:
        await redis.aclose()
        await _stop(presence)


async def test_a_desk_recovers_without_waiting_when_presence_runs(
    settings: ServiceSettings, own_redis: LocalRedis
) -> None:
    settings = settings.model_copy(update={"redis_url": own_redis.url})
    keys = Keys(settings.key_prefix)
    presence = await _presence(settings)
    redis = Redis.from_url(own_redis.url)
    try:
        async with running_gateway(gateway_settings(settings)) as gw:
            emma = await Desk.open(gw.url, token(TENANT, "a-emma"))
            await _status_event(redis, keys, "a-emma")
            seen = (await emma.events(1))[-1]["seq"]
            killed = time.monotonic()
            await asyncio.to_thread(own_redis.restart, empty=True)
            fresh = await _next(emma, "snapshot", timeout=30)
            recovered_s = time.monotonic() - killed
            assert fresh["session_epoch"] > emma.snapshot["session_epoch"]
            assert fresh["as_of_seq"] >= seen
            assert fresh["status"] == "available"
            await redis.aclose()
            redis = Redis.from_url(own_redis.url)  # the test's own connections died with the server
            seq = await _status_event(redis, keys, "a-emma")
            (event,) = await emma.events(1)
            assert event["seq"] == seq > seen
            print(f"desk recovered {recovered_s:.2f}s after Redis was killed")
            await emma.close()
    finally:
        await redis.aclose()
        await _stop(presence)
