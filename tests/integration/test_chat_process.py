"""`python -m switchboard.chat` starts from environment variables alone and stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal

import httpx
import pytest
from websockets.asyncio.client import connect

from switchboard.chat.signing import widget_token
from switchboard.runtime.settings import ServiceSettings
from switchboard_tools.stack.procs import free_port
from tests.helpers import service_env, start_service, stop_service
from tests.redis_cluster import on_both_redis_backends

pytestmark = [pytest.mark.broker, on_both_redis_backends]


async def test_the_adapter_process_takes_a_message_and_exits_zero_on_sigterm(settings: ServiceSettings) -> None:
    port = free_port()
    env = service_env(
        settings,
        port,
        SB_SERVICE_NAME="chat",
        SB_CHAT_TENANT_SECRETS=json.dumps({"shop-p": "process-secret"}),
    )
    proc, base = await start_service("switchboard.chat", env)
    try:
        async with httpx.AsyncClient(base_url=base) as http:
            token = widget_token(b"process-secret", "p-1")
            async with connect(f"ws://127.0.0.1:{port}/chat/v1/ws?tenant=shop-p&customer=p-1&token={token}") as ws:
                assert json.loads(await ws.recv())["type"] == "hello"
                await ws.send(json.dumps({"type": "message", "client_msg_id": "1", "text": "在吗"}))
                assert json.loads(await ws.recv())["type"] == "ack"
                metrics = (await http.get("/metrics")).text
                assert 'sb_websocket_connections{kind="widget",service="chat"} 1.0' in metrics
            assert 'sb_chat_messages_total{outcome="accepted",source="widget"} 1.0' in metrics
            assert 'sb_inbound_messages_total{channel="chat",outcome="accepted",tenant="shop-p"} 1.0' in metrics
            # A configured tenant's series exist before its first message of that outcome.
            assert 'sb_inbound_messages_total{channel="chat",outcome="rate_limited",tenant="shop-p"} 0.0' in metrics
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        await stop_service(proc)
