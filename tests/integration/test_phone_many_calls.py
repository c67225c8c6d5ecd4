"""Many calls at once over several platform sockets, segments shuffled, partials mixed in, resends after acks:
every call's final segments reach the inbound topic once each, in seq order, between its started and ended."""

from __future__ import annotations

import asyncio
import json
import random
from collections import defaultdict
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from switchboard.contracts import CallEvent, InboundMessage
from switchboard.runtime.settings import ServiceSettings
from switchboard.runtime.topics import Topics
from tests.helpers import read_topic
from tests.integration.phone_service import SHOP_A_KEY, running_phone, segment, started

pytestmark = pytest.mark.broker

SOCKETS = 3
CALLS_PER_SOCKET = 8
SEGMENTS = 12


class Platform:
    """One platform socket: frames sent back to back, answers matched by id."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for raw in self.ws:
            frame = json.loads(raw)
            self.waiting.pop(frame["id"]).set_result(frame)

    async def send(self, frame_id: str, *items: dict[str, Any]) -> dict[str, Any]:
        answer = self.waiting[frame_id] = asyncio.get_running_loop().create_future()
        await self.ws.send(json.dumps({"id": frame_id, "items": list(items)}, ensure_ascii=False))
        return await answer


def _shuffled_nearby(values: list[int], rng: random.Random) -> list[int]:
    """Each value moved at most a couple of places, as ASR results overtake each other."""
    return [v for _, v in sorted((i + rng.uniform(0, 3), v) for i, v in enumerate(values))]


async def _one_call(platform: Platform, call_id: str, rng: random.Random) -> None:
    assert (await platform.send(f"{call_id}/start", started(call_id)))["type"] == "ack"
    sends = []
    for seq in _shuffled_nearby(list(range(1, SEGMENTS + 1)), rng):
        partial = segment(call_id, seq, f"{call_id} 第{seq}句", final=False)
        sends.append(platform.send(f"{call_id}/p{seq}", partial))
        sends.append(platform.send(f"{call_id}/{seq}", segment(call_id, seq, f"{call_id} 第{seq}句。")))
    answers = await asyncio.gather(*sends)
    assert {a["type"] for a in answers} == {"ack"}, [a for a in answers if a["type"] != "ack"]
    resent = [segment(call_id, seq, f"{call_id} 第{seq}句。") for seq in rng.sample(range(1, SEGMENTS + 1), 4)]
    again = await platform.send(f"{call_id}/again", *resent)
    assert {r["status"] for r in again["results"]} == {"duplicate"}
    assert (await platform.send(f"{call_id}/end", {"type": "call.ended", "call_id": call_id}))["type"] == "ack"


async def test_many_calls_shuffled_and_resent_arrive_once_each_in_order(settings: ServiceSettings) -> None:
    rng = random.Random(4)
    async with running_phone(settings, phone_reorder_window_s=5.0) as phone:
        sockets = [await connect(phone.ws, additional_headers=SHOP_A_KEY) for _ in range(SOCKETS)]
        try:
            platforms = [Platform(ws) for ws in sockets]
            await asyncio.gather(
                *(
                    _one_call(platform, f"m{n}-{c}", rng)
                    for n, platform in enumerate(platforms)
                    for c in range(CALLS_PER_SOCKET)
                )
            )
        finally:
            for ws in sockets:
                await ws.close()
            await asyncio.gather(*(p.reader for p in platforms), return_exceptions=True)
    calls = SOCKETS * CALLS_PER_SOCKET
    records = await read_topic(settings.kafka_bootstrap, Topics(settings.topic_prefix).inbound, calls * (SEGMENTS + 2))
    by_call: dict[str, list[InboundMessage]] = defaultdict(list)
    for _, message in records:
        assert isinstance(message, InboundMessage)
        by_call[message.phone.call_id].append(message)
    assert len(by_call) == calls
    for call_id, messages in by_call.items():
        events = [m.phone.event for m in messages]
        assert events[0] == CallEvent.CALL_EVENT_STARTED, call_id
        assert events[-1] == CallEvent.CALL_EVENT_ENDED, call_id
        finals = messages[1:-1]
        assert [m.phone.segment_seq for m in finals] == list(range(1, SEGMENTS + 1)), call_id
        assert all(m.phone.is_final and "out_of_order" not in m.attributes for m in finals)
