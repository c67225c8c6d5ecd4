"""What the load generator reads from the stack besides desktops: routing decisions and queue depths.

Both only read: the routing topic with a group-less consumer from the end (it commits nothing and joins no group),
and queue sizes with ZCARD in one pipelined round trip per sample.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer
from redis.asyncio import Redis

from switchboard.contracts import (
    TYPE_HEADER,
    Channel,
    ContractError,
    InboundMessage,
    RoutingEvent,
    RoutingEventType,
    decode,
)
from switchboard.runtime.kafka import kafka_options_for
from switchboard.runtime.topics import Topics
from switchboard.state.keys import Keys
from switchboard_tools.loadgen.fixtures import SKILL_GROUPS
from switchboard_tools.loadgen.observations import Stages
from switchboard_tools.loadgen.scenario import CHANNELS
from switchboard_tools.loadgen.service import EventRecord

TAG = re.compile(r"\[lg:([a-z]{10})\]")


@dataclass(frozen=True)
class OnTopic:
    """A load-test message as the adapter wrote it to the inbound topic."""

    message_id: str
    conversation_id: str
    received_at: float


@dataclass(frozen=True)
class LastDecision:
    """The latest routing event of a conversation."""

    type: str
    group: str
    agent_id: str
    at: float


# A conversation whose latest decision is one of these still waits in switchboard for an agent: its undelivered
# messages are pending when a run is cut off, not lost (after a timeout or decline the router offers it again).
WAITING_DECISIONS = frozenset({"queued", "requeued", "offered", "timed_out", "declined"})
# Routing events that are no routing decision: the gateway's record of an agent's reply (response time).
NOT_DECISIONS = frozenset({"responded"})
# A conversation whose latest decision is one of these is not for an agent: the customer left it, or the bot
# answered it. Its undelivered messages are neither lost nor pending.
NOT_FOR_AGENTS = frozenset({"abandoned", "answered_by_bot"})


def event_record(event: RoutingEvent, name: str, at: float) -> EventRecord:
    """What the service figures keep of a routing event."""
    enqueued = event.enqueued_at.ToMilliseconds() / 1000 if event.HasField("enqueued_at") else None
    return EventRecord(
        conversation_id=event.conversation_id,
        type=name,
        at=at,
        channel=Channel.Name(event.channel).removeprefix("CHANNEL_").lower() if event.channel else "",
        group=event.skill_group,
        agent_id=event.agent_id,
        enqueued_at=enqueued or None,
        wait_ms=event.wait_ms,
        response_ms=event.response_ms,
        first_response=event.first_response,
        response_target_s=event.response_target_s,
        bot_template=event.bot_template,
        surge_profile=event.surge_profile,
    )


def not_for_agents(last: LastDecision | None) -> bool:
    """True when a conversation's latest decision leaves it to nobody: abandoned, or answered by the bot."""
    return last is not None and last.type in NOT_FOR_AGENTS


class RoutingProbe:
    """Follows sb.inbound.v1 and sb.routing.v1 from the run's start.

    From the inbound topic: which conversation and message id each tagged message got, and when the adapter
    received it. From the routing topic: when each message got its first decision, the decisions per second, and
    each conversation's latest decision, which says where an undelivered message is stuck.
    """

    def __init__(self, bootstrap: str, topic_prefix: str, tenants: Sequence[str]) -> None:
        self.tenants = set(tenants)
        self.first_decision: dict[str, float] = {}
        self.times: list[float] = []
        self.types: dict[str, int] = {}
        self.inbound: dict[str, OnTopic] = {}
        self.inbound_times: list[float] = []
        self.last_decision: dict[str, LastDecision] = {}
        # Every routing event of the run's tenants, reduced (the service figures: deflection, abandonment, …).
        self.events: list[EventRecord] = []
        # Called with the conversation id of each ANSWERED_BY_BOT decision (simulated customers react to it).
        self.on_bot_answer: Callable[[str], None] | None = None
        # Called with (tag, conversation id) of each load-test message on the inbound topic.
        self.on_inbound: Callable[[str, str], None] | None = None
        topics = Topics(topic_prefix)
        self._inbound_topic = topics.inbound
        self._consumer = AIOKafkaConsumer(
            topics.inbound,
            topics.routing,
            **kafka_options_for(bootstrap),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="latest",
        )
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Connect and begin following from the end of the topic."""
        await self._consumer.start()
        # Position on every partition now, so events from the first second of the run are not skipped.
        await self._consumer.getmany(timeout_ms=200)
        self._task = asyncio.create_task(self._follow())

    async def _follow(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=500, max_records=2000)
            for records in batches.values():
                for record in records:
                    self._take(record.headers, record.value)

    def _take(self, headers: Sequence[tuple[str, bytes]], value: bytes | None) -> None:
        type_header = dict(headers or ()).get(TYPE_HEADER, b"").decode()
        try:
            record = decode(type_header, value or b"")
        except ContractError:
            return
        if isinstance(record, InboundMessage) and record.tenant_id in self.tenants:
            self._inbound(record)
        elif isinstance(record, RoutingEvent) and record.tenant_id in self.tenants:
            self._decision(record)

    def _inbound(self, message: InboundMessage) -> None:
        received = message.received_at.ToMilliseconds() / 1000
        self.inbound_times.append(received)
        match = TAG.search(message.text)
        if match:
            self.inbound[match.group(1)] = OnTopic(message.message_id, message.conversation_id, received)
            if self.on_inbound is not None:
                self.on_inbound(match.group(1), message.conversation_id)

    def _decision(self, event: RoutingEvent) -> None:
        at = event.at.ToMilliseconds() / 1000
        name = RoutingEventType.Name(event.type).removeprefix("ROUTING_EVENT_").lower()
        self.types[name] = self.types.get(name, 0) + 1
        self.events.append(event_record(event, name, at))
        if name in NOT_DECISIONS:
            return
        self.times.append(at)
        if event.message_id and event.message_id not in self.first_decision:
            self.first_decision[event.message_id] = at
        self.last_decision[event.conversation_id] = LastDecision(name, event.skill_group, event.agent_id, at)
        if name == "answered_by_bot" and self.on_bot_answer is not None:
            self.on_bot_answer(event.conversation_id)

    def settled_without_agent(self, tag: str) -> bool:
        """The tag's conversation was abandoned or answered by the bot (so no desktop will get it)."""
        seen = self.inbound.get(tag)
        return seen is not None and not_for_agents(self.last_decision.get(seen.conversation_id))

    def stages(self) -> dict[str, Stages]:
        """Each tag on the inbound topic: its conversation, the adapter's receive time and the router's first
        decision (or None)."""
        return {
            tag: Stages(seen.conversation_id, seen.received_at, self.first_decision.get(seen.message_id))
            for tag, seen in self.inbound.items()
        }

    def whereabouts(self, tag: str, started_at: float) -> dict[str, object]:
        """Where a message went: on the inbound topic or not, its conversation's latest routing decision, and
        whether that decision leaves it queued (waiting for an agent) at the run's cut-off."""
        seen = self.inbound.get(tag)
        if seen is None:
            return {"tag": tag, "on_inbound_topic": False}
        last = self.last_decision.get(seen.conversation_id)
        where: dict[str, object] = {
            "tag": tag,
            "on_inbound_topic": True,
            "conversation_id": seen.conversation_id,
            "message_id": seen.message_id,
            "received_at": f"+{seen.received_at - started_at:.1f}s",
        }
        if last is not None:
            where["last_decision"] = (
                f"{last.type} group={last.group or '-'} agent={last.agent_id or '-'} at +{last.at - started_at:.1f}s"
            )
        where["queued_at_cut_off"] = last is not None and last.type in WAITING_DECISIONS
        # Not for an agent: the customer left (abandoned) or the bot answered, and nothing routed it after.
        where["not_for_agents"] = last.type if last is not None and last.type in NOT_FOR_AGENTS else ""
        return where

    async def stop(self) -> None:
        """Stop following and disconnect."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self._consumer.stop()


class QueueSampler:
    """Samples the queue depth of every skill group of the run's tenants (all channels together)."""

    def __init__(self, redis: Redis, key_prefix: str, tenants: Sequence[str]) -> None:
        self.redis = redis
        self.keys = Keys(key_prefix)
        self.targets: list[tuple[str, list[str]]] = []
        for tenant in tenants:
            for group in SKILL_GROUPS:
                names = [self.keys.queue(tenant, group)]
                names += [self.keys.queue_channel(tenant, group, channel) for channel in CHANNELS]
                self.targets.append((f"{tenant}/{group}", names))

    async def sample(self) -> dict[str, int]:
        """Conversations waiting per `tenant/group` right now."""
        pipe = self.redis.pipeline(transaction=False)
        for _, names in self.targets:
            for name in names:
                pipe.zcard(name)
        counts = await pipe.execute()
        result: dict[str, int] = {}
        i = 0
        for label, names in self.targets:
            result[label] = sum(int(c) for c in counts[i : i + len(names)])
            i += len(names)
        return result

    async def run(self, every_s: float, report: Callable[[dict[str, int]], None]) -> None:
        """Sample every `every_s` seconds until cancelled; a Redis hiccup skips one sample."""
        while True:
            with contextlib.suppress(Exception):
                report(await self.sample())
            await asyncio.sleep(every_s)
