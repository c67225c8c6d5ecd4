"""The router with an intent classifier, against a real Redis: a message no rule matches reaches the classifier's
group, and every event of its conversation (QUEUED, the ASSIGNED after the wait, the desk's ASSIGNED, CLOSED) names
the classifier and its confidence; a rule's conversation names the rule; a bad examples file keeps the model."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from redis.asyncio import Redis

from switchboard.contracts import AgentCommand, AgentCommandType, RoutingEvent, RoutingEventType
from switchboard.router.engine import MemorySink, Router
from switchboard.router.reload import ConfigStore
from switchboard.routing.classify import intent_model
from switchboard.state.keys import Keys
from tests.router_support import message, now_ms, outbox, put_agent
from tests.unit.test_routing_intent import CONFIG, SMALL

pytestmark = pytest.mark.broker

T = "small-x"
PARCEL = "买了三天了还在广州 物流一直不动"  # no rule names it: the classifier's logistics


@dataclass
class Env:
    redis: Redis
    keys: Keys
    store: ConfigStore
    router: Router
    sink: MemorySink
    directory: Path

    async def send(self, conv: str, mid: str, text: str, **kw: str) -> None:
        assert await self.router.handle_inbound([message(T, conv, mid, text, **kw)]) == []

    async def close(self, conv: str, agent: str) -> None:
        epoch = int(await self.redis.hget(self.keys.conversation(T, conv), "epoch") or 0)
        command = AgentCommand(
            command_id=uuid.uuid4().hex,
            tenant_id=T,
            agent_id=agent,
            conversation_id=conv,
            type=AgentCommandType.AGENT_COMMAND_CLOSE,
            epoch=epoch,
            wrap_up_code="resolved",
        )
        assert await self.router.handle_commands([command]) == []

    def events(self, conv: str) -> list[RoutingEvent]:
        return [e for e in self.sink.events if e.conversation_id == conv]


@pytest.fixture
async def env(redis: Redis, prefix: str, tmp_path: Path) -> AsyncIterator[Env]:
    (tmp_path / f"{T}.yaml").write_text(CONFIG, encoding="utf-8")
    (tmp_path / f"{T}.examples.txt").write_text(SMALL, encoding="utf-8")
    keys = Keys(prefix.rstrip("."))
    store = ConfigStore(tmp_path)
    assert store.poll() and not store.errors
    sink = MemorySink()
    yield Env(redis, keys, store, Router(redis, keys, store, sink, instance="test", clock=now_ms), sink, tmp_path)


async def test_no_rule_the_classifier_routes_and_every_event_of_the_conversation_says_so(env: Env) -> None:
    await put_agent(env.redis, env.keys, T, "wei", ["logistics"], chat=1)
    await env.send("c1", "m1", "快递到哪了 显示签收了但我没拿到")  # wei takes the first
    await env.send("c2", "m2", PARCEL)  # wei is full: c2 waits
    queued = [e for e in env.events("c2") if e.type == RoutingEventType.ROUTING_EVENT_QUEUED]
    assert [(e.skill_group, e.classified_by, e.rule_matched) for e in queued] == [
        ("logistics", "classifier", "classifier")
    ]
    confidence = queued[0].confidence
    assert 0.4 <= confidence <= 1 and queued[0].classified_rule == "classifier"

    await env.close("c1", "wei")  # wei has room: the queued c2 is drained to her
    later = env.events("c2")[1:]
    assert [RoutingEventType.Name(e.type) for e in later] == ["ROUTING_EVENT_ASSIGNED"]
    assert (later[0].agent_id, later[0].classified_by, later[0].confidence) == ("wei", "classifier", confidence)
    closed = [e for e in env.events("c1") if e.type == RoutingEventType.ROUTING_EVENT_CLOSED]
    assert closed[0].classified_by == "classifier"  # a command's event names the classification too
    desk = [e for e in await outbox(env.redis, env.keys, T, "wei") if e.conversation_id == "c2"]
    assert desk[0].routing.classified_by == "classifier" and desk[0].routing.confidence == confidence


async def test_a_rule_comes_first_and_its_events_name_it(env: Env) -> None:
    await put_agent(env.redis, env.keys, T, "min", ["complaints"], chat=1)
    await env.send("c1", "m1", PARCEL + " 我要投诉")
    [assigned] = env.events("c1")
    assert (assigned.skill_group, assigned.agent_id) == ("complaints", "min")
    assert (assigned.classified_by, assigned.rule_matched, assigned.classified_rule) == (
        "rule",
        "complaint-words",
        "complaint-words",
    )
    assert assigned.confidence == 0


async def test_below_the_threshold_the_default_group_takes_it_and_the_event_says_so(env: Env) -> None:
    config = env.store.get(T)
    assert config is not None
    strict = config.model_copy(update={"classifier": config.classifier.model_copy(update={"threshold": 1.0})})
    env.store.put(strict)
    await env.send("c1", "m1", PARCEL)
    [queued] = env.events("c1")
    assert (queued.skill_group, queued.classified_by, queued.rule_matched) == ("presales", "low_confidence", "default")
    assert 0 < queued.confidence < 1


async def test_a_phone_call_is_classified_among_the_groups_that_take_calls(env: Env) -> None:
    await env.send("p1", "p1", "杯子收到就裂了 要退", channel="phone")  # after_sales takes no calls
    [queued] = env.events("p1")
    assert queued.skill_group not in ("after_sales", "presales") and queued.classified_by == "classifier"


async def test_a_bad_examples_file_keeps_the_model_in_force(env: Env) -> None:
    config = env.store.get(T)
    assert config is not None
    model = intent_model(config)
    examples = env.directory / f"{T}.examples.txt"
    examples.write_text("[logistics]\n快递\n", encoding="utf-8")
    os.utime(examples, (100, 100))
    assert not env.store.poll()
    assert str(env.store.errors[env.directory / f"{T}.yaml"]).startswith(f"{examples}:1: [logistics] has 1")
    kept = env.store.get(T)
    assert kept is not None and intent_model(kept) is model
    await env.send("c1", "m1", PARCEL)
    assert env.events("c1")[0].skill_group == "logistics"
