"""`python -m switchboard.presence` as a process: env-only start, roster loaded, operator API, lost heartbeats swept
by the service, SIGTERM exits 0."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

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


async def test_levels_set_live_survive_a_presence_restart(settings: ServiceSettings, redis: Redis) -> None:
    env = service_env(
        settings,
        free_port(),
        SB_SERVICE_NAME="presence",
        SB_OPERATOR_TOKENS=json.dumps([{"name": "ops-a", "token": TOKEN, "tenants": ["shop-a"]}]),
    )
    auth = {"Authorization": f"Bearer {TOKEN}"}
    lina = "/v1/operator/tenants/shop-a/agents/a-lina"
    for run in range(2):
        proc, base = await start_service("switchboard.presence", env, timeout=30)
        try:
            async with httpx.AsyncClient(base_url=base, timeout=5) as http:
                if run == 0:
                    resp = await http.patch(lina, json={"proficiency": {"presales": 2, "orders": 5}}, headers=auth)
                    assert resp.status_code == 200, resp.text
                view = (await http.get("/v1/operator/tenants/shop-a/agents", headers=auth)).json()
                levels = {a["agent_id"]: a["proficiency"] for a in view["agents"]}
                assert levels["a-lina"] == {"orders": 5, "presales": 2}, f"run {run}"
                assert levels["a-min"] == {"complaints": 5, "after_sales": 3}  # from the roster
        finally:
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 20) == 0
    # the restart wrote nothing new for her: her last record is the live change, as the router knows it
    found = await read_topic(settings.kafka_bootstrap, settings.topic_prefix + "sb.presence.v1", 8 + 1)
    record = [m for k, m in found if k == "shop-a/a-lina" and isinstance(m, AgentPresence)][-1]
    assert dict(record.proficiency) == {"orders": 5, "presales": 2}
    assert (
        await redis.hget(Keys(settings.key_prefix).agent("shop-a", "a-lina"), "proficiency") == b"orders:5,presales:2"
    )


async def test_a_broken_roster_stops_presence_at_start_naming_file_and_line(
    settings: ServiceSettings, tmp_path: Path
) -> None:
    roster = tmp_path / "agents.yaml"
    roster.write_text(
        "tenants:\n  - tenant_id: shop-x\n    agents:\n      - agent_id: x1\n        groups: [presales]\n"
        "        proficiency: {presales: 7}\n",
        encoding="utf-8",
    )
    env = service_env(settings, free_port(), SB_SERVICE_NAME="presence", SB_ROSTER_PATH=str(roster))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "switchboard.presence", env=env, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode != 0
    assert f"{roster}:6: tenants.0.agents.0.proficiency.presales: Input should be less than or equal to 5" in (
        stderr.decode()
    )
