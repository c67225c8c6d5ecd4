"""Response time end to end (real router process, Kafka and Redis, a gateway replica and a desktop socket): each
customer message is timed to the agent's next reply, a resent reply counts once, the group's target and then the
surge profile's decide "within", and the figures in Redis, the RESPONDED events and the metrics agree."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from switchboard.contracts import TYPE_HEADER, InboundMessage, OutboundMessage, RoutingEvent, RoutingEventType, decode
from switchboard.runtime.kafka import RecordProducer
from switchboard.runtime.settings import ServiceSettings
from switchboard.state.agents import PresenceStore
from switchboard.state.keys import Keys
from switchboard.state.responses import agent_scope, day_bucket, group_scope, read_figures
from switchboard.state.roster import ChannelSlots, RosterAgent
from tests.integration.gateway_support import Desk, gateway_settings, running_gateway, token
from tests.integration.router_procs import REPO, start_router, stop_router
from tests.router_support import message

pytestmark = [pytest.mark.broker]

T = "tmall-flagship"
GROUP_TARGET_S = 60


def routing_dir(tmp_path: Path) -> Path:
    """The repo's routing configs, with presales given a target of its own (the tenant's stays the default)."""
    directory = tmp_path / "routing"
    directory.mkdir()
    text = (REPO / "config" / "routing" / f"{T}.yaml").read_text(encoding="utf-8")
    marker = "  - name: presales\n"
    assert marker in text
    text = text.replace(marker, f"{marker}    response_target_s: {GROUP_TARGET_S}\n", 1)
    (directory / f"{T}.yaml").write_text(text, encoding="utf-8")
    return directory


class Records:
    """Every record of one topic from its start, read on demand."""

    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self.consumer = consumer
        self.seen: list[object] = []

    async def until(self, done: Callable[[list[object]], bool], what: str, timeout: float = 30.0) -> list[object]:
        """Read until `done(seen)` (or fail after `timeout`)."""
        deadline = time.monotonic() + timeout
        while not done(self.seen):
            assert time.monotonic() < deadline, f"{what} not seen: {self.seen[-5:]}"
            batches = await self.consumer.getmany(timeout_ms=300)
            for batch in batches.values():
                for r in batch:
                    headers = {k: v.decode() for k, v in r.headers}
                    self.seen.append(decode(headers.get(TYPE_HEADER), r.value))
        return self.seen

    async def replies(self, count: int) -> list[OutboundMessage]:
        """The first `count` OutboundMessages."""
        seen = await self.until(lambda s: len(outbound(s)) >= count, f"{count} replies")
        return outbound(seen)[:count]

    async def responded(self, count: int) -> dict[str, RoutingEvent]:
        """RESPONDED events by event id, once `count` distinct ones were read."""
        seen = await self.until(lambda s: len(responded(s)) >= count, f"{count} responses")
        return responded(seen)


@contextlib.asynccontextmanager
async def records(bootstrap: str, topic: str) -> AsyncIterator[Records]:
    """A reader of `topic` from its start."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    try:
        yield Records(consumer)
    finally:
        await consumer.stop()


def outbound(seen: list[object]) -> list[OutboundMessage]:
    return [m for m in seen if isinstance(m, OutboundMessage)]


def responded(seen: list[object]) -> dict[str, RoutingEvent]:
    return {
        e.event_id: e
        for e in seen
        if isinstance(e, RoutingEvent) and e.type == RoutingEventType.ROUTING_EVENT_RESPONDED
    }


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def _assigned(desk: Desk, conversation: str) -> int:
    while True:
        [event] = await desk.events(1, timeout=30)
        if event["event"] == "offer" and event["conversation_id"] == conversation:
            await desk.command({"type": "accept", "id": "accept", "conversation_id": conversation})
        if event["event"] == "assigned" and event["conversation_id"] == conversation:
            return int(event["epoch"])


async def _delivered(desk: Desk, conversation: str, mids: set[str]) -> None:
    while mids:
        [event] = await desk.events(1, timeout=30)
        if event.get("conversation_id") == conversation and "message" in event:
            mids.discard(event["message"].get("message_id"))


@dataclass
class Scene:
    """The running parts one test drives: the customer's side (producer), the agent's desk, and the topics read."""

    producer: RecordProducer
    desk: Desk
    events: Records
    replies: Records
    epoch: int = 0
    written: list[InboundMessage] = field(default_factory=list)

    async def write(self, mid: str, seconds_ago: float) -> InboundMessage:
        """A customer message of `CONV` the adapter received `seconds_ago`."""
        m = message(T, CONV, mid, "在吗")
        m.received_at.FromMilliseconds(int(time.time() * 1000 - seconds_ago * 1000))
        await self.producer.send(self.producer.topics.inbound, CONV, m)
        self.written.append(m)
        return m

    async def reply(self, ref: str, text: str = "好的") -> dict[str, Any]:
        """The agent's reply with the client id `ref`."""
        frame = {"type": "reply", "id": ref, "conversation_id": CONV, "epoch": self.epoch, "text": text}
        answer = await self.desk.command(frame)
        assert answer["type"] == "result", answer
        return answer


CONV = "r-c1"


async def test_replies_are_timed_from_the_first_unanswered_message_once_against_the_target_in_force(
    settings: ServiceSettings, redis: Redis, tmp_path: Path
) -> None:
    gs = gateway_settings(settings, routing_config_dir=routing_dir(tmp_path))
    producer = RecordProducer(gs)
    await producer.start()
    router = None
    try:
        await PresenceStore(redis, Keys(gs.key_prefix), producer).add_agent(
            T, RosterAgent(agent_id="mei", groups=["presales"], languages=["zh"], capacity=ChannelSlots(chat=3))
        )
        router, _ = await start_router(settings, tmp_path, "router-responses")
        async with (
            records(gs.kafka_bootstrap, producer.topics.routing) as events,
            records(gs.kafka_bootstrap, producer.topics.outbound) as replies,
            running_gateway(gs) as gw,
        ):
            desk = await Desk.open(gw.url, token(T, "mei"))
            config = await desk.command({"type": "desk_config", "id": "cfg"})
            assert config["config"]["response_targets"]["presales"] == GROUP_TARGET_S
            assert config["config"]["response_targets"]["orders"] == 180, "the tenant's default"
            scene = Scene(producer, desk, events, replies)
            first = await _first_response_counted_once(scene)
            later, surged = await _later_responses(scene, redis, Keys(gs.key_prefix))
            await _figures_agree(scene, redis, Keys(gs.key_prefix), [first, later, surged])
            await desk.close()
            # A desk that opens again (a reload, another device) learns what is answered: its timer stays off.
            again = await Desk.open(gw.url, token(T, "mei"))
            [conv] = again.snapshot["conversations"]
            assert conv["answered_ms"] == max(m.received_at.ToMilliseconds() for m in scene.written)
            await again.close()
    finally:
        if router is not None:
            await stop_router(router)
        await producer.stop()


async def _first_response_counted_once(scene: Scene) -> RoutingEvent:
    over_before = sample("sb_responses_total", tenant=T, group="presales", kind="first", within="no")
    # The customer wrote 100 s ago (the adapter's received_at); the agent's first reply comes now.
    first = await scene.write("r-m1", 100)
    scene.epoch = await _assigned(scene.desk, CONV)
    answer = await scene.reply("r1", "在的，您好")
    [sent] = await scene.replies.replies(1)
    [one] = (await scene.events.responded(1)).values()
    assert one.response_ms == sent.sent_at.ToMilliseconds() - first.received_at.ToMilliseconds()
    assert 100_000 <= one.response_ms < 130_000
    assert one.first_response and one.response_target_s == GROUP_TARGET_S
    assert (one.agent_id, one.skill_group, one.tenant_id, one.message_id) == ("mei", "presales", T, "r-m1")
    assert one.at.ToMilliseconds() == sent.sent_at.ToMilliseconds()
    # The desktop resends the same reply (same id, after a lost result): sent again, counted once.
    again = await scene.reply("r1", "在的，您好")
    assert again["message_id"] == answer["message_id"]
    await scene.replies.replies(2)
    counted = sample("sb_responses_total", tenant=T, group="presales", kind="first", within="no")
    assert counted == over_before + 1, "the resend was not counted again"
    return one


async def _later_responses(scene: Scene, redis: Redis, keys: Keys) -> tuple[RoutingEvent, RoutingEvent]:
    # Two customer messages, then one reply: timed from the first of them; a later response.
    second = await scene.write("r-m2", 20)
    await scene.write("r-m3", 18)
    await _delivered(scene.desk, CONV, {"r-m2", "r-m3"})
    await scene.reply("r2")
    # A follow-up with no customer message waiting answers nothing.
    await scene.reply("r3", "还有吗")
    # A surge profile's target for presales overrides the group's.
    profile = {"tenant_factor": 1.0, "response_target_s": {"presales": 10}}
    await redis.hset(keys.surge_profiles(T), "double11", json.dumps(profile))
    await redis.hset(keys.surge_state(T), mapping={"active": "double11", "since_ms": int(time.time() * 1000)})
    await scene.write("r-m4", 15)
    await _delivered(scene.desk, CONV, {"r-m4"})
    await scene.reply("r4", "稍等")

    at = {m.message_id: m.sent_at.ToMilliseconds() for m in await scene.replies.replies(5)}
    # Keyed by conversation, so in reply order: had r3 been a response its event would come before r4's.
    by_id = await scene.events.responded(3)
    assert len(by_id) == 3, "r1 (its resend has the same event id), r2 and r4; r3 answered nothing"
    later, surged = sorted((e for e in by_id.values() if not e.first_response), key=lambda e: e.at.ToMilliseconds())
    assert later.message_id == "r-m2", "timed from the first unanswered message"
    assert later.response_ms == at[answer_id(later)] - second.received_at.ToMilliseconds()
    assert later.response_target_s == GROUP_TARGET_S and 20_000 <= later.response_ms < 50_000
    assert surged.message_id == "r-m4" and surged.response_target_s == 10
    assert surged.surge_profile == "double11" and surged.response_ms >= 15_000
    return later, surged


async def _figures_agree(scene: Scene, redis: Redis, keys: Keys, responses: list[RoutingEvent]) -> None:
    """The figures every replica and the board read: three responses, one within its target (r2's)."""
    day = day_bucket(int(time.time() * 1000))
    scopes = [group_scope("presales"), agent_scope("mei")]
    figures = await read_figures(redis, keys, T, scopes, [day])
    total_ms = sum(r.response_ms for r in responses)
    for scope in scopes:
        got = figures[scope]
        assert (got.responses, got.within, got.sum_ms) == (3, 1, total_ms), scope
        assert (got.first_responses, got.first_within) == (1, 0), scope
        assert got.within_rate == round(1 / 3, 4) and got.average_s == round(total_ms / 3 / 1000, 1)
    stats = await scene.desk.command({"type": "response_stats", "id": "stats"})
    assert stats["today"]["responses"] == 3 and stats["today"]["average_s"] == round(total_ms / 3 / 1000, 1)
    # Per conversation (the desk's and the board's `context`): three responses, the first one's time, one within.
    context = await scene.desk.command({"type": "context", "id": "ctx", "conversation_id": CONV})
    mine = context["responses"]
    assert (mine["responses"], mine["within_target"]) == (3, 1)
    assert mine["first_response_s"] == round(responses[0].response_ms / 1000, 1)


def answer_id(event: RoutingEvent) -> str:
    """The reply message id a RESPONDED event names in its reasons."""
    return next(r.split(":", 1)[1] for r in event.reasons if r.startswith("reply:"))
