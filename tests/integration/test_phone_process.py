"""`python -m switchboard.phone` as `switchboard up` runs it: env-only config, ready, serves, exits 0 on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal

import httpx
import pytest
from websockets.asyncio.client import connect

from switchboard.contracts import CallEvent
from switchboard.runtime.settings import ServiceSettings
from switchboard.runtime.topics import Topics
from switchboard_tools.stack.procs import free_port
from tests.helpers import read_topic, service_env, start_service, stop_service
from tests.integration.phone_service import SHOP_A_KEY, segment, started
from tests.redis_cluster import on_both_redis_backends

pytestmark = [pytest.mark.broker, on_both_redis_backends]


async def test_the_phone_service_starts_from_env_serves_both_transports_and_stops_on_sigterm(
    settings: ServiceSettings,
) -> None:
    port = free_port()
    proc, base = await start_service("switchboard.phone", service_env(settings, port, SB_SERVICE_NAME="phone"))
    try:
        async with httpx.AsyncClient(base_url=base, headers=SHOP_A_KEY) as http:
            assert (await http.post("/v1/phone/events", json=[started("p-1")])).status_code == 200
            async with connect(f"ws://127.0.0.1:{port}/v1/phone/stream", additional_headers=SHOP_A_KEY) as ws:
                await ws.send(json.dumps({"id": "s1", "items": [segment("p-1", 1, "hi")]}))
                assert json.loads(await ws.recv(decode=True))["type"] == "ack"
                # SIGTERM with the platform's socket still open: the service closes it and exits cleanly.
                proc.send_signal(signal.SIGTERM)
                assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        await stop_service(proc)
    records = await read_topic(settings.kafka_bootstrap, Topics(settings.topic_prefix).inbound, 2)
    assert records[0][1].phone.event == CallEvent.CALL_EVENT_STARTED  # type: ignore[attr-defined]
