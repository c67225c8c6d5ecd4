"""The intent classifier in the real router process: sb.inbound.v1 in, the classifier's group and confidence on
sb.routing.v1 out; a bad examples file written while it runs is refused with file:line in its log and the model
in force stays."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from redis.asyncio import Redis

from switchboard.contracts import RoutingEvent, RoutingEventType
from switchboard.runtime.kafka import RecordProducer
from switchboard.runtime.settings import ServiceSettings
from switchboard.runtime.topics import Topics
from switchboard.state.keys import Keys
from tests.helpers import eventually
from tests.integration.email_support import read_all
from tests.integration.router_procs import start_router, stop_router
from tests.router_support import message, put_agent
from tests.unit.test_routing_intent import CONFIG, SMALL

pytestmark = pytest.mark.broker

T = "small-x"


async def test_the_router_process_routes_by_the_classifier_and_keeps_its_model_on_a_bad_examples_file(
    settings: ServiceSettings, redis: Redis, producer: RecordProducer, tmp_path: Path
) -> None:
    keys, topics = Keys(settings.key_prefix), Topics(settings.topic_prefix)
    routing = tmp_path / "routing"
    routing.mkdir()
    (routing / f"{T}.yaml").write_text(CONFIG, encoding="utf-8")
    examples = routing / f"{T}.examples.txt"
    examples.write_text(SMALL, encoding="utf-8")
    await put_agent(redis, keys, T, "wei", ["logistics"], chat=5)
    extra = {"SB_ROUTING_CONFIG_DIR": str(routing), "SB_CONFIG_POLL_S": "0.2"}
    router, _ = await start_router(settings, tmp_path, "router-intent", extra=extra)

    async def owner(conv: str) -> bool:
        return await redis.hget(keys.conversation(T, conv), "owner") == b"wei"

    try:
        await producer.send(topics.inbound, "c1", message(T, "c1", "m1", "买了三天了还在广州 物流一直不动"))
        await eventually(lambda: owner("c1"), 30, "the classifier's logistics took c1")

        examples.write_text(SMALL + "[nowhere]\n", encoding="utf-8")
        os.utime(examples, (1000, 1000))
        log = tmp_path / "router-intent.log"

        async def refused() -> bool:
            return f"{examples}:" in log.read_text(encoding="utf-8", errors="replace")

        await eventually(refused, 30, "the bad examples file refused in the log")
        assert "unknown skill group [nowhere]" in log.read_text(encoding="utf-8", errors="replace")
        await producer.send(topics.inbound, "c2", message(T, "c2", "m2", "快递员说放驿站了 我没找到"))
        await eventually(lambda: owner("c2"), 30, "the model in force still routes c2 to logistics")
    finally:
        await stop_router(router)

    events = [m for _, m in await read_all(settings.kafka_bootstrap, topics.routing) if isinstance(m, RoutingEvent)]
    assigned = [e for e in events if e.type == RoutingEventType.ROUTING_EVENT_ASSIGNED]
    assert sorted((e.conversation_id, e.skill_group, e.classified_by) for e in assigned) == [
        ("c1", "logistics", "classifier"),
        ("c2", "logistics", "classifier"),
    ]
    assert all(0.35 <= e.confidence <= 1 and e.rule_matched == "classifier" for e in assigned)
