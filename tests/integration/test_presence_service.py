"""`python -m switchboard.presence` as a process: env-only start, roster loaded, operator API, lost heartbeats swept
by the service, SIGTERM exits 0."""

from __future__ import annotations

import asyncio
import json
import signal

import httpx
import pytest
from redis.asyncio import Redis

from switchboard.contracts import AgentPresence, AgentStatus
from switchboard.runtime.kafka import RecordProducer
from switchboard.runtime.settings import ServiceSettings
from switchboard.state.agent_model import Status
from switchboard.state.agents import PresenceStore
from switchboard.state.keys import Keys
from switchboard_tools.stack.procs import free_port
from tests.helpers import eventually, read_topic, service_env, start_service
from tests.redis_cluster import on_both_redis_backends

pytestmark = [pytest.mark.broker, on_both_redis_backends]

TOKEN = "ops-shop-a-0123456789abcdef"


async def test_presence_process(settings: ServiceSettings, redis: Redis) -> None:
    env = service_env(
        settings,
        free_port(),
        SB_SERVICE_NAME="presence",
        SB_HEARTBEAT_GRACE_S="0.5",
        SB_SWEEP_INTERVAL_S="0.1",
        SB_OPERATOR_TOKENS=json.dumps([{"name": "ops-a", "token": TOKEN, "tenants": ["shop-a"]}]),
    )
    proc, base = await start_service("switchboard.presence", env, timeout=30)
    try:
        async with httpx.AsyncClient(base_url=base, timeout=2) as http:
            resp = await http.get("/v1/operator/tenants/shop-a/agents", headers={"Authorization": f"Bearer {TOKEN}"})
            assert resp.status_code == 200
            assert resp.json()["by_status"] == {"offline": 5}
            assert (await http.get("/v1/operator/tenants/shop-b/agents")).status_code == 401
            assert (await http.get("/openapi.json")).json()["info"]["title"] == "switchboard presence operator API"

        # The gateway's side: an agent logs in, beats once, then its socket dies.
        producer = RecordProducer(settings)
        await producer.start()
        try:
            store = PresenceStore(redis, Keys(settings.key_prefix), producer)
            epoch = await store.login("shop-a", "a-emma")

            async def offline() -> bool:
                agent = await store.get_agent("shop-a", "a-emma")
                return agent is not None and agent.status is Status.OFFLINE

            await eventually(offline, timeout=5, what="swept offline by the service")
        finally:
            await producer.stop()
        found = await read_topic(settings.kafka_bootstrap, settings.topic_prefix + "sb.presence.v1", 8 + 2)
        emma = [m for k, m in found if k == "shop-a/a-emma" and isinstance(m, AgentPresence)]
        assert emma[-1].status == AgentStatus.AGENT_STATUS_OFFLINE
        assert emma[-1].session_epoch == epoch
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
