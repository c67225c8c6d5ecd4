"""End to end with the real presence store and router process: a customer's messages reach the agent's desktop in
order, the agent's reply becomes an OutboundMessage, close is carried back to the desk."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis.asyncio import Redis

from switchboard.contracts import OutboundMessage
from switchboard.runtime.kafka import RecordProducer
from switchboard.runtime.settings import ServiceSettings
from switchboard.state.agents import PresenceStore
from switchboard.state.history import CustomerHistory
from switchboard.state.keys import Keys
from switchboard.state.roster import ChannelSlots, RosterAgent
from tests.helpers import eventually, read_topic
from tests.integration.gateway_support import Desk, gateway_settings, running_gateway, token
from tests.integration.router_procs import start_router, stop_router
from tests.redis_cluster import on_both_redis_backends
from tests.router_support import message

pytestmark = [pytest.mark.broker, on_both_redis_backends]

T = "tmall-flagship"


async def _until_event(desk: Desk, kinds: set[str], conversation: str) -> dict[str, object]:
    while True:
        [event] = await desk.events(1, timeout=30)
        if event["event"] in kinds and event.get("conversation_id") == conversation:
            return event


async def test_customer_to_desk_and_reply_back_through_router_and_presence(
    settings: ServiceSettings, redis: Redis, tmp_path: Path
) -> None:
    gs = gateway_settings(settings)
    producer = RecordProducer(gs)
    await producer.start()
    router = None
    try:
        store = PresenceStore(redis, Keys(gs.key_prefix), producer)
        await store.add_agent(
            T, RosterAgent(agent_id="lina", groups=["presales"], languages=["zh"], capacity=ChannelSlots(chat=3))
        )
        # Inside the try: a router that does not start (the cluster variant) must not leave the producer open.
        router, _ = await start_router(settings, tmp_path, "router-e2e")
        async with running_gateway(gs) as gw:
            desk = await Desk.open(gw.url, token(T, "lina"))
            assert desk.snapshot["status"] == "available"
            topics = producer.topics
            await producer.send(topics.inbound, "c1", message(T, "c1", "m1", "这件衣服有XL码吗"))

            first = await _until_event(desk, {"offer", "assigned"}, "c1")
            if first["event"] == "offer":
                accepted = await desk.command({"type": "accept", "id": "a1", "conversation_id": "c1"})
                assert accepted["type"] == "result", accepted
                first = await _until_event(desk, {"assigned"}, "c1")
            epoch = int(first["epoch"])  # type: ignore[call-overload]

            for i in range(5):
                await producer.send(topics.inbound, "c1", message(T, "c1", f"m{i + 2}", f"第{i}个问题"))
            texts = []
            while len(texts) < 5:
                event = await _until_event(desk, {"message"}, "c1")
                texts.append(event["message"]["text"])  # type: ignore[index]
            assert texts == [f"第{i}个问题" for i in range(5)], "in the order the customer sent them"

            answer = await desk.command(
                {"type": "reply", "id": "r1", "conversation_id": "c1", "epoch": epoch, "text": "有的, XL有货"}
            )
            assert answer["type"] == "result", answer
            [(key, reply)] = await read_topic(gs.kafka_bootstrap, topics.outbound, 1)
            assert isinstance(reply, OutboundMessage) and key == "c1"
            assert (reply.tenant_id, reply.agent_id, reply.epoch, reply.text) == (T, "lina", epoch, "有的, XL有货")

            closing = await desk.command(
                {"type": "close", "id": "x1", "conversation_id": "c1", "wrap_up_code": "answered", "epoch": epoch}
            )
            assert closing["type"] == "result", closing
            closed = await _until_event(desk, {"closed"}, "c1")
            assert closed["routing"]["wrap_up_code"] == "answered", closed  # type: ignore[index]
            # The router kept the close in the customer's history, which the desk reads with `context`.
            history = CustomerHistory(redis, Keys(gs.key_prefix))
            customer = (await redis.hget(Keys(gs.key_prefix).conversation(T, "c1"), "customer_id")).decode()

            async def recorded() -> bool:
                return bool(await history.read(T, customer))

            await eventually(recorded, 10, "the close in the customer's history")
            [entry] = await history.read(T, customer)
            assert (entry.conversation_id, entry.agent_id, entry.wrap_up_code) == ("c1", "lina", "answered")
            await desk.close()
    finally:
        if router is not None:
            await stop_router(router)
        await producer.stop()
