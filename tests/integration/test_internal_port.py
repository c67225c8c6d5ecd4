"""SB_INTERNAL_PORT on real processes: the operator surface (/metrics, /healthz, /readyz, presence's operator API)
moves to a second listener and the public port answers 404 for it; unset, one listener serves everything."""

from __future__ import annotations

import asyncio
import json
import os
import signal

import httpx
import pytest

from switchboard.runtime.settings import ServiceSettings
from switchboard_tools.stack.procs import free_port
from tests.helpers import service_env, start_service, stop_service
from tests.integration.gateway_support import ORIGIN, SECRET

pytestmark = [pytest.mark.broker]

TOKEN = "ops-all-0123456789abcdef"
GRANTS = json.dumps([{"name": "ops", "token": TOKEN, "tenants": ["*"]}])
AUTH = {"Authorization": f"Bearer {TOKEN}"}
OPERATOR_AGENTS = "/v1/operator/tenants/shop-a/agents"
OPERATOR_SURFACE = ["/metrics", "/healthz", "/readyz", OPERATOR_AGENTS]


async def terminate(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM, and the process exits 0."""
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 30) == 0


def listening_ports(pid: int) -> set[int]:
    """TCP ports the process listens on (its socket inodes matched against /proc/net/tcp)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table, encoding="ascii") as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


async def test_presence_and_gateway_serve_the_operator_surface_only_on_the_internal_port(
    settings: ServiceSettings,
) -> None:
    presence_public, presence_internal = free_port(), free_port()
    presence_env = service_env(
        settings,
        presence_public,
        SB_SERVICE_NAME="presence",
        SB_INTERNAL_PORT=str(presence_internal),
        SB_OPERATOR_TOKENS=GRANTS,
    )
    presence, _ = await start_service("switchboard.presence", presence_env)
    gateway: asyncio.subprocess.Process | None = None
    try:
        assert listening_ports(presence.pid) == {presence_public, presence_internal}
        async with httpx.AsyncClient(timeout=5) as http:
            internal = f"http://127.0.0.1:{presence_internal}"
            public = f"http://127.0.0.1:{presence_public}"
            assert (await http.get(f"{internal}{OPERATOR_AGENTS}", headers=AUTH)).status_code == 200
            assert (await http.get(f"{internal}/healthz")).json()["service"] == "presence"
            assert "sb_" in (await http.get(f"{internal}/metrics")).text
            openapi = (await http.get(f"{internal}/openapi.json")).json()
            assert openapi["info"]["title"] == "switchboard presence operator API"
            assert any(path.startswith("/v1/operator/") for path in openapi["paths"])
            for path in OPERATOR_SURFACE:
                assert (await http.get(f"{public}{path}", headers=AUTH)).status_code == 404, path

            # The gateway reaches presence's operator API on the internal port (SB_PRESENCE_URL), as in Kubernetes.
            gateway_public, gateway_internal = free_port(), free_port()
            gateway_env = service_env(
                settings,
                gateway_public,
                SB_SERVICE_NAME="gateway",
                SB_INTERNAL_PORT=str(gateway_internal),
                SB_JWT_SECRET=SECRET,
                SB_ALLOWED_ORIGINS=f'["{ORIGIN}"]',
                SB_OPERATOR_TOKENS=GRANTS,
                SB_PRESENCE_URL=internal,
            )
            gateway, _ = await start_service("switchboard.gateway", gateway_env)
            gw_public = f"http://127.0.0.1:{gateway_public}"
            for path in ("/metrics", "/healthz", "/readyz"):
                assert (await http.get(f"{gw_public}{path}")).status_code == 404, path
            assert "sb_" in (await http.get(f"http://127.0.0.1:{gateway_internal}/metrics")).text
            # The board (its own login) and the desk login stay public.
            surge = await http.get(f"{gw_public}/v1/board/tenants/shop-a/operator/surge", headers=AUTH)
            assert surge.status_code == 200, surge.text
            assert "active_profile" in surge.json()
            login = {"tenant_id": "shop-a", "agent_id": "a-lina", "password": "wrong"}
            assert (await http.post(f"{gw_public}/login", json=login)).status_code == 401
        await terminate(gateway)
        await terminate(presence)
    finally:
        for proc in (gateway, presence):
            if proc is not None:
                await stop_service(proc)


async def test_without_an_internal_port_one_listener_serves_everything(settings: ServiceSettings) -> None:
    port = free_port()
    env = service_env(settings, port, SB_SERVICE_NAME="presence", SB_OPERATOR_TOKENS=GRANTS)
    env.pop("SB_INTERNAL_PORT", None)
    presence, _ = await start_service("switchboard.presence", env)
    try:
        assert listening_ports(presence.pid) == {port}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            for path in OPERATOR_SURFACE:
                assert (await http.get(path, headers=AUTH)).status_code == 200, path
        await terminate(presence)
    finally:
        await stop_service(presence)
