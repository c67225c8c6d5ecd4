"""Desktops that close while the gateway still has something to send them (shift changes, closed laptops).

The gateway must end such a session quietly: no exception reaches the HTTP server ("Exception in ASGI
application" in the log), and the replica keeps serving every other desktop.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from websockets.asyncio.client import connect
from websockets.typing import Origin

from switchboard.contracts import DeskEvent, DeskEventType
from switchboard.gateway.settings import GatewaySettings
from switchboard.runtime.kafka import RecordProducer
from switchboard.runtime.settings import ServiceSettings
from switchboard.state.keys import Keys
from switchboard.state.outbox import append_desk_event
from tests.helpers import eventually
from tests.integration.gateway_support import (
    ORIGIN,
    Desk,
    RunningGateway,
    gateway_settings,
    load_agents,
    running_gateway,
    token,
)
from tests.redis_cluster import on_both_redis_backends

pytestmark = [pytest.mark.broker, on_both_redis_backends]

AGENTS = ("a-lina", "a-wei", "a-min", "a-emma")


@pytest.fixture
async def gs(settings: ServiceSettings, redis: Redis) -> AsyncIterator[GatewaySettings]:
    """Gateway settings with the dev roster loaded."""
    values = gateway_settings(settings)
    producer = RecordProducer(values)
    await producer.start()
    await load_agents(values, redis, producer)
    await producer.stop()
    yield values


def unhandled(caplog: pytest.LogCaptureFixture, gw: RunningGateway) -> list[str]:
    """What the server saw raised by the app, and what it logged about it."""
    logged = [r.getMessage() for r in caplog.records if r.name.startswith("uvicorn") and r.levelno >= logging.ERROR]
    return [repr(e) for e in gw.app_errors] + logged


async def send_and_leave(url: str, frames: list[dict[str, object]]) -> None:
    """Open a socket, authenticate with the first frame, send the others once the snapshot came, and close at once."""
    async with connect(url, origin=Origin(ORIGIN)) as ws:
        await ws.send(json.dumps(frames[0]))
        if len(frames) > 1:
            assert json.loads(await ws.recv())["type"] == "snapshot"
        for frame in frames[1:]:
            await ws.send(json.dumps(frame))


async def still_served(gw: RunningGateway, redis: Redis, gs: GatewaySettings) -> None:
    """Another desktop of the replica opens, gets answers and events as usual."""
    await redis.hset(  # type: ignore[misc]
        Keys(gs.key_prefix).conversation("shop-a", "c-ok"), mapping={"owner": "a-emma", "epoch": 2, "state": "assigned"}
    )
    desk = await Desk.open(gw.url, token("shop-a", "a-emma"))
    answer = await desk.command({"type": "typing", "id": "t1", "conversation_id": "c-ok"})
    assert answer == {"type": "result", "id": "t1", "ok": True, "forwarded": False}  # not a chat conversation
    await desk.close()


async def test_a_command_whose_desktop_left_before_the_result_ends_quietly(
    gs: GatewaySettings, redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    keys = Keys(gs.key_prefix)
    for agent in AGENTS[:3]:
        await redis.hset(  # type: ignore[misc]
            keys.conversation("shop-a", f"c-{agent}"),
            mapping={"owner": agent, "epoch": 1, "state": "assigned", "channel": "chat", "customer_id": "cust"},
        )
    caplog.set_level(logging.INFO)
    async with running_gateway(gs) as gw:
        # A reply waits for Kafka's ack, so the result is always written after the desktop closed.
        leaving = [
            send_and_leave(
                gw.url,
                [
                    {"type": "auth", "token": token("shop-a", agent)},
                    {"type": "reply", "id": "r", "conversation_id": f"c-{agent}", "epoch": 1, "text": "bye"},
                    {"type": "heartbeat", "id": "h"},
                    {"type": "close", "id": "c", "conversation_id": f"c-{agent}", "wrap_up_code": "done"},
                ],
            )
            for agent in AGENTS[:3]
        ]
        await asyncio.gather(*leaving)

        async def all_gone() -> bool:
            return not gw.gateway.hub.sessions

        await eventually(all_gone, 10, "sessions of the closed desktops ended")
        await still_served(gw, redis, gs)
        assert unhandled(caplog, gw) == []


async def test_a_desktop_that_leaves_before_its_snapshot_or_events_ends_quietly(
    gs: GatewaySettings, redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    keys = Keys(gs.key_prefix)
    for n in range(300):  # a backlog the writer is still sending when the desktop goes
        event = DeskEvent(
            tenant_id="shop-a", agent_id="a-wei", type=DeskEventType.DESK_EVENT_MESSAGE, conversation_id=f"c-{n}"
        )
        await append_desk_event(redis, keys, event)
    caplog.set_level(logging.INFO)
    async with running_gateway(gs) as gw:
        await asyncio.gather(
            *(send_and_leave(gw.url, [{"type": "auth", "token": token("shop-a", "a-lina")}]) for _ in range(5)),
            *(send_and_leave(gw.url, [{"type": "auth", "token": token("shop-a", "a-wei")}]) for _ in range(5)),
        )

        async def all_gone() -> bool:
            return not gw.gateway.hub.sessions

        await eventually(all_gone, 10, "sessions of the closed desktops ended")
        await still_served(gw, redis, gs)
        assert unhandled(caplog, gw) == []
