"""`python -m switchboard.gateway` as a process: ready, login over HTTP, a desk session, SIGTERM closes it with 1012."""

from __future__ import annotations

import asyncio
import sys

import httpx
import pytest
from redis.asyncio import Redis

from switchboard.gateway.protocol import CloseCode
from switchboard.runtime.kafka import RecordProducer
from switchboard.runtime.settings import ServiceSettings
from switchboard_tools.stack.procs import free_port
from tests.helpers import eventually, service_env
from tests.integration.gateway_support import ORIGIN, SECRET, Desk, load_agents
from tests.redis_cluster import on_both_redis_backends

pytestmark = [pytest.mark.broker, on_both_redis_backends]


async def test_gateway_process_serves_and_shuts_down_gracefully(settings: ServiceSettings, redis: Redis) -> None:
    producer = RecordProducer(settings)
    await producer.start()
    await load_agents(settings, redis, producer)
    await producer.stop()
    port = free_port()
    env = service_env(settings, port, SB_JWT_SECRET=SECRET, SB_ALLOWED_ORIGINS=f'["{ORIGIN}"]', SB_SHUTDOWN_GRACE_S="5")
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "switchboard.gateway", env=env)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:

            async def ready() -> bool:
                assert proc.returncode is None, "gateway exited"
                try:
                    return (await http.get("/readyz")).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(ready, 30, "gateway ready")
            login = await http.post(
                "/login", json={"tenant_id": "shop-b", "agent_id": "b-sara", "password": "dev-sara"}
            )
            assert login.status_code == 200
            desk = await Desk.open(f"ws://127.0.0.1:{port}/desk", login.json()["token"])
            assert desk.snapshot["agent_id"] == "b-sara"
            metrics = (await http.get("/metrics")).text
            assert 'sb_websocket_connections{kind="desk",service="gateway"} 1.0' in metrics
        proc.terminate()
        assert await desk.close_code() == CloseCode.SERVICE_RESTART
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
