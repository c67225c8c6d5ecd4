"""A caller who hangs up, through the real router process: sb.inbound.v1 in, ABANDONED on sb.routing.v1 out."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis.asyncio import Redis

from switchboard.contracts import CallEvent, MessageKind, PhoneDetail, RoutingEvent, RoutingEventType
from switchboard.runtime.kafka import RecordProducer
from switchboard.runtime.settings import ServiceSettings
from switchboard.runtime.topics import Topics
from switchboard.state.figures import read_service_level
from switchboard.state.keys import Keys
from tests.helpers import eventually
from tests.integration.email_support import read_all
from tests.integration.router_procs import start_router, stop_router
from tests.router_support import message, now_ms, put_agent

pytestmark = pytest.mark.broker

T = "tmall-flagship"


async def test_a_caller_who_hangs_up_while_queued_is_abandoned_by_the_router_process(
    settings: ServiceSettings, redis: Redis, producer: RecordProducer, tmp_path: Path
) -> None:
    keys, topics = Keys(settings.key_prefix), Topics(settings.topic_prefix)
    await put_agent(redis, keys, T, "lina", ["orders"], chat=0, email=0, phone=1)
    router, _ = await start_router(settings, tmp_path, "router-abandon")
    try:
        for conv in ("call-1", "call-2"):
            await producer.send(
                topics.inbound, conv, message(T, conv, f"{conv}-start", "地址写错了 我要改地址", channel="phone")
            )

        async def state_is(conv: str, wanted: str) -> bool:
            return await redis.hget(keys.conversation(T, conv), "state") == wanted.encode()

        await eventually(lambda: state_is("call-2", "queued"), 30, "the second call queued")
        ended = message(T, "call-2", "call-2-ended", "", channel="phone")
        ended.kind = MessageKind.MESSAGE_KIND_CALL_EVENT
        ended.phone.CopyFrom(PhoneDetail(call_id="call-2", event=CallEvent.CALL_EVENT_ENDED))
        await producer.send(topics.inbound, "call-2", ended)
        await eventually(lambda: state_is("call-2", "abandoned"), 30, "the hung-up call abandoned")
    finally:
        await stop_router(router)

    events = [m for _, m in await read_all(settings.kafka_bootstrap, topics.routing) if isinstance(m, RoutingEvent)]
    [abandoned] = [e for e in events if e.type == RoutingEventType.ROUTING_EVENT_ABANDONED]
    assert abandoned.conversation_id == "call-2" and abandoned.message_id == "call-2-ended"
    assert abandoned.wait_ms > 0 and "abandoned:call_ended" in abandoned.reasons
    assert await redis.hget(keys.agent(T, "lina"), "used:phone") == b"1"  # call-1 still holds lina's slot
    level = await read_service_level(redis, keys, T, "orders", "phone", target_s=30, now_ms=now_ms())
    assert (level.answered, level.abandoned) == (1, 1)
