"""Rebuilding the router's state of a tenant after Redis lost it (docs/state.md "When Redis loses its data").

The routing topic says, per conversation, what the router last decided: its state, owner and epoch (the event with
the highest epoch wins; of equal epochs the later one), group, channel, priority and original arrival. The inbound
topic, read up to the router group's committed offsets, holds every message the router had handled; what comes
after those offsets is consumed again normally once the state is back. From both, one script per conversation
(lua/rebuild.lua) writes back its hash, its backlog (the messages since it opened, newest 200) with their processed
markers, its queue entry (queued; an offered one is queued again, its offer is not remade) or its owner's slot and
desk events (ASSIGNED with the backlog, which the desktop recognises by message_id), and the abandoned or bot-answered
conversations a returning customer continues. Conversations that had messages but no decision (the bot held them,
its answer was lost with Redis) are handed back to the inbound handler as if they had just arrived (`orphans`).

    rebuild = RouterRebuild(redis, keys, configs, TopicReader(settings), instance=..., marker_ttl_s=...)
    await StateMarks(redis, keys, "router", instance).ensure(tenant, rebuild)
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from google.protobuf.message import Message
from redis.asyncio import Redis

from switchboard.contracts import TYPE_HEADER, ContractError, InboundMessage, RoutingEvent, RoutingEventType, decode
from switchboard.router.events import CHANNEL_NAMES
from switchboard.router.inbound import is_live
from switchboard.router.reload import ConfigStore
from switchboard.router.scripts import REBUILD, KeySet, context, script
from switchboard.routing.scoring import stored_score
from switchboard.runtime.errors import TransientError
from switchboard.runtime.kafka import kafka_client_options, start_client, stop_client
from switchboard.runtime.logs import get_logger
from switchboard.runtime.lua import ScriptCall, run_pipelined
from switchboard.runtime.settings import ServiceSettings
from switchboard.runtime.topic_reader import open_reader, records_between
from switchboard.runtime.topics import Topics
from switchboard.state.keys import Keys

log = get_logger(__name__)

T = RoutingEventType
# The state an event leaves its conversation in (TRANSFERRED depends on its target; the rest change no state).
STATE_AFTER = {
    T.ROUTING_EVENT_QUEUED: "queued",
    T.ROUTING_EVENT_REQUEUED: "queued",
    T.ROUTING_EVENT_TIMED_OUT: "queued",
    T.ROUTING_EVENT_DECLINED: "queued",
    T.ROUTING_EVENT_OFFERED: "offered",
    T.ROUTING_EVENT_ASSIGNED: "assigned",
    T.ROUTING_EVENT_ACCEPTED: "assigned",
    T.ROUTING_EVENT_CLOSED: "closed",
    T.ROUTING_EVENT_ABANDONED: "abandoned",
    T.ROUTING_EVENT_ANSWERED_BY_BOT: "bot_answered",
}
# Events whose skill_group is the group the owner serves it in, not the conversation's own.
SERVED = (T.ROUTING_EVENT_OFFERED, T.ROUTING_EVENT_ASSIGNED, T.ROUTING_EVENT_ACCEPTED)
BACKLOG_MAX = 200  # lua/lib.lua BACKLOG_MAX
CHUNK = 100
READ_LIMIT_S = 120.0
SCRIPT = script(REBUILD)


@dataclass
class Folded:
    """One conversation as the routing topic left it."""

    conv: str
    state: str = ""
    owner: str = ""
    last_owner: str = ""
    epoch: int = 0
    group: str = ""
    served: str = ""
    channel: str = ""
    prio: int = 0
    enq: int = 0
    rule: str = ""
    by: str = ""
    conf: float = 0.0
    lang: str = ""
    # The message that opened it last (its first decision after a close), and when it was last closed (ms).
    opened_by: str = ""
    closed_ms: int = 0

    def apply(self, e: RoutingEvent) -> None:
        """Fold one event in (events of a conversation in topic order)."""
        self._describe(e)
        state = STATE_AFTER.get(e.type)
        if e.type == T.ROUTING_EVENT_TRANSFERRED:
            state = "assigned" if e.transfer_to_agent else "queued"
        if state is None or e.epoch < self.epoch:
            self.epoch = max(self.epoch, e.epoch)
            return
        if self.state in ("", "closed") and state != "closed":
            self.opened_by = e.message_id
        self.epoch = e.epoch
        self.state = state
        if e.type == T.ROUTING_EVENT_TRANSFERRED:
            self.last_owner = e.previous_agent_id
            self.owner = e.transfer_to_agent
            if e.transfer_to_group:
                self.group = e.transfer_to_group
        elif state == "assigned":
            self.owner = e.agent_id
        else:
            if e.agent_id and state in ("closed", "queued"):
                self.last_owner = e.agent_id
            self.owner = ""
        if state == "closed":
            self.closed_ms = e.at.ToMilliseconds()

    def _describe(self, e: RoutingEvent) -> None:
        """What every event tells of the conversation: channel, groups, priority, arrival, classification."""
        if e.channel in CHANNEL_NAMES:
            self.channel = CHANNEL_NAMES[e.channel]
        if e.skill_group:
            if e.type in SERVED:
                self.served = e.skill_group
                self.group = self.group or e.skill_group
            elif e.type != T.ROUTING_EVENT_TRANSFERRED:
                self.group = e.skill_group
        if e.HasField("enqueued_at"):
            self.enq = e.enqueued_at.ToMilliseconds()
            self.prio = e.priority
        self.rule = e.classified_rule or e.rule_matched or self.rule
        if e.classified_by:
            self.by, self.conf = e.classified_by, e.confidence
        self.lang = e.language or self.lang

    @property
    def open(self) -> bool:
        """Queued, offered or assigned: it holds a backlog, a queue place or a slot."""
        return self.state in ("queued", "offered", "assigned")

    def backlog(self, messages: Sequence[InboundMessage]) -> list[InboundMessage]:
        """Its messages since it opened (all of an abandoned or bot-answered one, which its customer continues)."""
        if not (self.open or self.state in ("abandoned", "bot_answered")):
            return []
        ids = [m.message_id for m in messages]
        if self.opened_by in ids:
            since = list(messages[ids.index(self.opened_by) :])
        else:
            since = [m for m in messages if arrived_ms(m) > self.closed_ms]
        return since[-BACKLOG_MAX:]

    def request(self, customer: str, mids: Sequence[str], aging_s_per_point: float) -> str:
        """The request of lua/rebuild.lua (an offer is not remade: the conversation is queued again)."""
        state = "queued" if self.state == "offered" or (self.state == "assigned" and not self.owner) else self.state
        enq = self.enq or int(time.time() * 1000)
        return json.dumps(
            {
                "conv": self.conv,
                "state": state,
                "owner": self.owner if state == "assigned" else "",
                "last_owner": self.last_owner,
                "epoch": self.epoch,
                "group": self.group,
                "served": self.served or self.group,
                "channel": self.channel or "chat",
                "prio": self.prio,
                "enq": enq,
                "rule": self.rule,
                "by": self.by,
                "conf": self.conf,
                "lang": self.lang,
                "customer": customer,
                "score": stored_score(enq, self.prio, aging_s_per_point),
                "mids": list(mids),
            },
            separators=(",", ":"),
        )


@dataclass(frozen=True)
class Held:
    """What a conversation's hash held before the rebuild: an agent's slot (assigned or offered), queue places."""

    holder: str = ""
    channel: str = "chat"
    queues: tuple[str, ...] = ()


def arrived_ms(m: InboundMessage) -> int:
    """When a message reached the adapter (its sent time when it has none)."""
    return m.received_at.ToMilliseconds() or m.sent_at.ToMilliseconds()


def fold(events: Iterable[RoutingEvent]) -> dict[str, Folded]:
    """Each conversation's state after its events (in topic order)."""
    found: dict[str, Folded] = {}
    for e in events:
        if e.conversation_id:
            found.setdefault(e.conversation_id, Folded(e.conversation_id)).apply(e)
    return found


@dataclass
class TopicReader:
    """Reads a tenant's routing events (the whole topic) and its inbound messages up to the router group's
    committed offsets (what the router had handled; the rest is consumed again normally)."""

    settings: ServiceSettings
    group_id: str = ""

    def __post_init__(self) -> None:
        self.topics = Topics(self.settings.topic_prefix)
        self.group_id = self.group_id or f"{self.settings.topic_prefix}router"

    async def read(self, tenant: str) -> tuple[list[RoutingEvent], list[InboundMessage]]:
        """The tenant's routing events and handled inbound messages, each in topic order."""
        events = [m async for m in self._messages(self.topics.routing, handled=False) if isinstance(m, RoutingEvent)]
        inbound = [m async for m in self._messages(self.topics.inbound, handled=True) if isinstance(m, InboundMessage)]
        return [e for e in events if e.tenant_id == tenant], [m for m in inbound if m.tenant_id == tenant]

    async def _messages(self, topic: str, *, handled: bool) -> AsyncIterator[Message]:
        async for record in self._records(topic, handled=handled):
            headers = {k: v.decode("utf-8", "replace") for k, v in (record.headers or ())}
            try:
                yield decode(headers.get(TYPE_HEADER), record.value)
            except ContractError:
                continue  # the consumers dead-lettered it: it changed no state

    async def _records(self, topic: str, *, handled: bool) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
        """The topic's records from the start to its end now; with `handled`, only up to the router group's
        committed offset of each partition (a partition without one: nothing, its records are consumed again)."""
        consumer = await open_reader(self.settings, topic, client_id=self._client_id)
        if consumer is None:
            return
        try:
            tps = sorted(consumer.assignment())
            starts = await consumer.beginning_offsets(tps)
            stops = await consumer.end_offsets(tps)
            if handled:
                committed = await self._committed(tps)
                stops = {tp: min(end, committed.get(tp, 0)) for tp, end in stops.items()}
            # The caller's StateMarks limit (15 s by default) bounds the whole rebuild; this one only ends a reader
            # left behind.
            async for record in records_between(consumer, starts, stops, timeout_s=READ_LIMIT_S):
                yield record
        finally:
            await stop_client(consumer, "router rebuild reader")

    async def _committed(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        """The router group's committed offsets (read by a consumer that is given the partitions by hand: it
        never joins the group and never commits)."""
        consumer = AIOKafkaConsumer(
            **kafka_client_options(self.settings),
            group_id=self.group_id,
            enable_auto_commit=False,
            client_id=self._client_id,
        )
        await start_client(consumer, self.settings, "router rebuild offsets")
        try:
            consumer.assign(tps)
            return {tp: await consumer.committed(tp) or 0 for tp in tps}
        finally:
            await stop_client(consumer, "router rebuild reader")

    @property
    def _client_id(self) -> str:
        return f"{self.settings.service_name}-{self.settings.instance_id}-rebuild"


@dataclass
class RouterRebuild:
    """Rebuilds a tenant's routing state from the topics (the `rebuild` of StateMarks.ensure)."""

    redis: Redis
    keys: Keys
    configs: ConfigStore
    reader: TopicReader
    instance: str = "router"
    marker_ttl_s: int = 7 * 24 * 3600
    # Per tenant, messages of conversations the router had decided nothing for: route them as new (Router).
    orphans: dict[str, list[InboundMessage]] = field(default_factory=dict)

    async def __call__(self, tenant: str) -> None:
        config = self.configs.get(tenant)
        if config is None:
            return
        started = time.monotonic()
        try:
            events, messages = await self.reader.read(tenant)
        except (KafkaError, OSError) as exc:
            # The batch waits (the consumer retries it) and the lock's TTL lets any replica try again.
            raise TransientError(f"router rebuild of {tenant} could not read the topics: {exc!r}") from exc
        folded = fold(events)
        by_conv: dict[str, list[InboundMessage]] = {}
        for m in messages:
            if not is_live(m):
                by_conv.setdefault(m.conversation_id, []).append(m)
        now = int(time.time() * 1000)
        ctx = context(self.keys, config, now, self.instance, self.marker_ttl_s)
        held = await self._held(tenant, list(folded))
        aging = config.queue.aging_s_per_point
        calls = [self._call(tenant, ctx, f, by_conv.get(f.conv, []), aging, held[f.conv]) for f in folded.values()]
        for start in range(0, len(calls), CHUNK):
            await run_pipelined(self.redis, calls[start : start + CHUNK])
        self.orphans[tenant] = [
            m
            for conv, msgs in by_conv.items()
            for m in msgs
            if conv not in folded or (folded[conv].state == "closed" and arrived_ms(m) > folded[conv].closed_ms)
        ]
        states: dict[str, int] = {}
        for f in folded.values():
            states[f.state] = states.get(f.state, 0) + 1
        log.info(
            "router_state_rebuilt",
            tenant=tenant,
            events=len(events),
            messages=len(messages),
            conversations=states,
            orphans=len(self.orphans[tenant]),
            seconds=round(time.monotonic() - started, 3),
        )

    async def _held(self, tenant: str, convs: list[str]) -> dict[str, Held]:
        """What each conversation's hash holds now (nothing after a loss; the script gives it back otherwise).
        Read before the scripts, which must declare the holder's keys: nothing else writes the tenant meanwhile,
        its mark being missing."""
        pipe = self.redis.pipeline(transaction=False)
        for conv in convs:
            pipe.hmget(self.keys.conversation(tenant, conv), ["state", "owner", "offer_agent", "channel", "queues"])
        found: dict[str, Held] = {}
        for conv, raw in zip(convs, await pipe.execute(), strict=True):
            state, owner, offered, channel, queues = (v.decode() if isinstance(v, bytes) else (v or "") for v in raw)
            holder = owner if state == "assigned" else offered if state == "offered" else ""
            found[conv] = Held(holder, channel or "chat", tuple(g for g in queues.split(",") if g))
        return found

    def _call(
        self, tenant: str, ctx: str, f: Folded, msgs: list[InboundMessage], aging: float, held: Held
    ) -> ScriptCall:
        backlog = f.backlog(msgs)
        customer = next((m.customer.customer_id for m in msgs if m.customer.customer_id), "")
        ks = KeySet(self.keys, tenant).tenant_wide().unsent().conversation(f.conv)
        if held.holder:
            ks.agent(held.holder)
        ks.groups(held.queues, held.channel)
        ks.add(*(self.keys.processed(tenant, "router", m.message_id) for m in backlog))
        if f.state in ("queued", "offered"):
            ks.groups([f.group], f.channel or "chat")
        elif f.state == "assigned" and f.owner:
            ks.agent(f.owner)
        request = f.request(customer, [m.message_id for m in backlog], aging)
        return ScriptCall(SCRIPT, ks.list(), (ctx, request, *(m.SerializeToString() for m in backlog)))
