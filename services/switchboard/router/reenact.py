"""Re-enacting a recording through the real router on a virtual clock (the engine of `switchboard replay`).

Every decision is the router's own: recorded inbound messages go through `Router.handle_inbound` at their recorded
times, agents' presence is written with presence's store and handed to `Upkeep.handle_presence`, agents' actions
go through `Router.handle_commands`, and `Upkeep.sweep` runs every sweep interval of virtual time. What is decided
here is only *what the agents and customers do*, taken from the recording:

- presence records (login, status, capacity, surge multiplier, logout) at their recorded times; a status change
  the recorded router made itself (an agent set away for missed offers) is left to the replay's router;
- an offer or assignment to the agent the recording gave it to gets that agent's recorded answer after the
  recorded delay (accept, decline, or nothing: the offer times out; close or transfer after the recorded time);
- one to another agent (the rules changed) gets a synthesized answer: accept after the conversation's recorded
  accept delay, close when the conversation's recorded handle time has passed since it was first owned.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import socket
import tempfile
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Generic, TypeVar

from google.protobuf.message import Message
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from switchboard.contracts import (
    AgentCommand,
    AgentCommandType,
    AgentPresence,
    InboundMessage,
    RoutingEvent,
    RoutingEventType,
)
from switchboard.router.engine import MemorySink, Router
from switchboard.router.events import CHANNEL_NAMES
from switchboard.router.reload import ConfigStore
from switchboard.runtime.kafka import Header, RecordProducer
from switchboard.runtime.redis_client import redis_for
from switchboard.runtime.topics import Topics
from switchboard.state.agent_model import PROTO_TO_STATUS, Status
from switchboard.state.agents import PresenceStore
from switchboard.state.keys import Keys

OWNED = (RoutingEventType.ROUTING_EVENT_ASSIGNED, RoutingEventType.ROUTING_EVENT_ACCEPTED)
COMMANDS = {
    "accept": AgentCommandType.AGENT_COMMAND_ACCEPT,
    "decline": AgentCommandType.AGENT_COMMAND_DECLINE,
    "close": AgentCommandType.AGENT_COMMAND_CLOSE,
    "transfer": AgentCommandType.AGENT_COMMAND_TRANSFER,
}
# Steps at the same millisecond: presence first (as if its record was consumed first), then agents, customers, sweep.
RANK = {"presence": 0, "action": 1, "inbound": 2, "sweep": 3}


T = TypeVar("T")


@dataclass(frozen=True)
class Timed(Generic[T]):
    """A recorded record and when it was recorded (the topic's timestamp, or the record's own time)."""

    at_ms: int
    record: T


@dataclass(frozen=True)
class Action:
    """What an agent did about a conversation, `delay_ms` after the offer or ownership it answers."""

    kind: str  # accept, decline, close, transfer
    delay_ms: int
    reason: str = ""
    wrap_up_code: str = ""
    to_agent: str = ""
    to_group: str = ""


def _owner_of(event: RoutingEvent) -> str:
    """The agent an event makes owner of its conversation, or ''."""
    if event.type in OWNED or event.type == RoutingEventType.ROUTING_EVENT_TRANSFERRED:
        return event.agent_id
    return ""


@dataclass
class Behaviour:
    """The agents' recorded behaviour per conversation, read from the recorded routing events.

    The events that record an action's effect (accepted, declined, closed, transferred) carry the router's time of
    the action, so the delay is measured on the router's clock on both sides.
    """

    # (conversation, agent) → the answer to each recorded offer, in order (None: the offer timed out).
    answers: dict[tuple[str, str], list[Action | None]] = field(default_factory=lambda: defaultdict(list))
    # (conversation, agent) → what ended each recorded ownership, in order (None: it was taken away).
    endings: dict[tuple[str, str], list[Action | None]] = field(default_factory=lambda: defaultdict(list))
    accept_delay_ms: dict[str, int] = field(default_factory=dict)
    handle_ms: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, events: Iterable[RoutingEvent]) -> Behaviour:
        """Read the behaviour from one tenant's (or several tenants') recorded events."""
        found = cls()
        offered: dict[tuple[str, str], int] = {}
        owned: dict[tuple[str, str], int] = {}
        first_owned: dict[str, int] = {}
        for event in sorted(events, key=lambda e: e.at.ToMilliseconds()):
            found._read(event, offered, owned, first_owned)
        return found

    def _read(
        self,
        event: RoutingEvent,
        offered: dict[tuple[str, str], int],
        owned: dict[tuple[str, str], int],
        first_owned: dict[str, int],
    ) -> None:
        at, conv, kind = event.at.ToMilliseconds(), event.conversation_id, event.type
        if kind == RoutingEventType.ROUTING_EVENT_OFFERED:
            offered[(conv, event.agent_id)] = at
            self.answers[(conv, event.agent_id)].append(None)
        elif kind in (RoutingEventType.ROUTING_EVENT_ACCEPTED, RoutingEventType.ROUTING_EVENT_DECLINED):
            key = (conv, event.agent_id)
            if key in offered and self.answers[key]:
                delay = at - offered.pop(key)
                name = "accept" if kind == RoutingEventType.ROUTING_EVENT_ACCEPTED else "decline"
                self.answers[key][-1] = Action(name, delay, reason=event.decline_reason)
                if name == "accept":
                    self.accept_delay_ms.setdefault(conv, delay)
        elif kind == RoutingEventType.ROUTING_EVENT_CLOSED and (conv, event.agent_id) in owned:
            self._end(conv, event.agent_id, at, Action("close", 0, wrap_up_code=event.wrap_up_code), owned)
            if conv in first_owned:
                self.handle_ms.setdefault(conv, at - first_owned[conv])
        elif kind == RoutingEventType.ROUTING_EVENT_TRANSFERRED and (conv, event.previous_agent_id) in owned:
            action = Action("transfer", 0, to_agent=event.transfer_to_agent, to_group=event.transfer_to_group)
            self._end(conv, event.previous_agent_id, at, action, owned)
        elif kind == RoutingEventType.ROUTING_EVENT_REQUEUED:
            for key in [k for k in owned if k[0] == conv]:
                owned.pop(key)
        owner = _owner_of(event)
        if owner:
            owned[(conv, owner)] = at
            first_owned.setdefault(conv, at)
            self.endings[(conv, owner)].append(None)

    def _end(self, conv: str, agent: str, at: int, action: Action, owned: dict[tuple[str, str], int]) -> None:
        self.endings[(conv, agent)][-1] = replace(action, delay_ms=at - owned.pop((conv, agent)))

    def typical_accept_ms(self) -> int:
        """The median recorded accept delay (for conversations that were never accepted in the recording)."""
        delays = sorted(self.accept_delay_ms.values())
        return delays[len(delays) // 2] if delays else 1000


@contextlib.asynccontextmanager
async def scratch_redis(url: str | None) -> AsyncIterator[tuple[Redis, Keys]]:
    """A Redis for one replay and a key prefix of its own; its keys are deleted after (or its server stopped).

    With `url` (a `redis+cluster://` one too) the replay uses that server under a unique prefix; without, it starts
    a local `redis-server` on a free loopback port with no persistence.
    """
    keys = Keys(f"replay-{uuid.uuid4().hex[:12]}")
    if url is not None:
        redis = redis_for(url)
        try:
            yield redis, keys
        finally:
            async for key in redis.scan_iter(match=f"{keys.prefix}:*", count=1000):
                await redis.unlink(key)
            await redis.aclose()
        return
    with tempfile.TemporaryDirectory(prefix="sb-replay-") as folder:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        server = await asyncio.create_subprocess_exec(
            *command, "--dir", folder, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        redis = Redis(host="127.0.0.1", port=port)
        try:
            await _wait_for(redis, server)
            yield redis, keys
        finally:
            await redis.aclose()
            server.terminate()
            await asyncio.wait_for(server.wait(), 10)


async def _wait_for(redis: Redis, server: asyncio.subprocess.Process) -> None:
    for _ in range(100):
        if server.returncode is not None:
            raise RuntimeError(f"redis-server exited with {server.returncode}")
        try:
            if await redis.ping():
                return
        except RedisConnectionError:
            await asyncio.sleep(0.05)
    raise RuntimeError("redis-server did not answer within 5 s")


class CollectingProducer(RecordProducer):
    """Stands in for Kafka under presence's store: keeps the AgentPresence records it would have sent."""

    def __init__(self) -> None:
        # No Kafka client: nothing leaves the replay.
        self.topics = Topics("replay.")
        self._presence: list[AgentPresence] = []

    async def send_many(
        self, topic: str, records: Iterable[tuple[str, Message]], headers: Sequence[Header] = ()
    ) -> None:
        """Keep the presence records (the only ones the store sends)."""
        self._presence.extend(m for _, m in records if isinstance(m, AgentPresence))

    def take_presence(self) -> list[AgentPresence]:
        """The records kept since the last call."""
        taken, self._presence = self._presence, []
        return taken


@dataclass
class VirtualClock:
    """The replay's time in epoch milliseconds, moved only by the replay."""

    now_ms: int = 0

    def ms(self) -> int:
        """Now, for the router."""
        return self.now_ms

    def seconds(self) -> float:
        """Now, for presence's store."""
        return self.now_ms / 1000


@dataclass(order=True)
class _Step:
    at_ms: int
    rank: int
    order: int
    run: Callable[[], Awaitable[None]] = field(compare=False)
    kind: str = field(compare=False)


class Reenactment:
    """One replay: a router and presence's store on a scratch Redis, driven by the recording on a virtual clock."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        configs: ConfigStore,
        behaviour: Behaviour,
        *,
        sweep_interval_s: float,
        snapshot_ttl_s: float,
        capacity_multiplier: float = 1.0,
    ) -> None:
        self.clock = VirtualClock()
        self.sink = MemorySink()
        self.configs = configs
        # The recorded router's snapshot lifetime: the router ages snapshots by its clock, here the virtual one, so
        # batches reuse a snapshot exactly when the recorded router's did.
        self.router = Router(
            redis, keys, configs, self.sink, instance="replay", clock=self.clock.ms, snapshot_ttl_s=snapshot_ttl_s
        )
        self.upkeep = self.router.upkeep
        self.published = CollectingProducer()
        self.presence = PresenceStore(redis, keys, self.published, clock=self.clock.seconds)
        self.behaviour = behaviour
        self.capacity_multiplier = capacity_multiplier
        self.sweep_ms = max(1, int(sweep_interval_s * 1000))
        self._steps: list[_Step] = []
        self._order = itertools.count()
        self._seen = 0
        self._offers: dict[tuple[str, str], int] = defaultdict(int)
        self._owned: dict[tuple[str, str], int] = defaultdict(int)
        self._first_owned: dict[str, int] = {}
        self._pending = 0  # steps other than sweeps still to run
        self._phase = 0  # bumped by each recorded sweep: the periodic sweeps of an older phase stop
        # Spans of virtual time in which the recorded router is known not to have swept (see Recording.quiet).
        self.quiet: Sequence[tuple[int, int]] = ()

    def at(self, at_ms: int, kind: str, run: Callable[[], Awaitable[None]]) -> None:
        """Run `run` at `at_ms` of virtual time."""
        heapq.heappush(self._steps, _Step(at_ms, RANK[kind], next(self._order), run, kind))
        if kind != "sweep":
            self._pending += 1

    async def run(self, tail_ms: int) -> list[RoutingEvent]:
        """Run every step; sweeps go on for `tail_ms` after the last other step. Returns the replay's decisions."""
        if not self._steps:
            return []
        self.clock.now_ms = self._steps[0].at_ms
        # Until the first customer message nothing waits and nothing is offered: sweeps start with it (a compacted
        # presence topic may hold records from days before).
        first = min((s.at_ms for s in self._steps if s.kind == "inbound"), default=self.clock.now_ms)
        self._periodic_sweep(first)
        last_other = self.clock.now_ms
        while self._steps:
            step = heapq.heappop(self._steps)
            if step.kind == "sweep" and not self._pending and step.at_ms > last_other + tail_ms:
                break
            self.clock.now_ms = max(self.clock.now_ms, step.at_ms)
            together = [step, *self._concurrent_with(step)]
            for one in together:
                if one.kind != "sweep":
                    self._pending -= 1
                    last_other = self.clock.now_ms
            await asyncio.gather(*(one.run() for one in together))
            self._react()
        return self.sink.events

    def _concurrent_with(self, step: _Step) -> list[_Step]:
        """The recorded router's consumer and sweep ran in one event loop: an inbound batch and a recorded sweep at
        the same millisecond run interleaved, as they did (both plan on what they read before either claims)."""
        if step.kind not in ("inbound", "sweep"):
            return []
        found = []
        while self._steps and self._steps[0].at_ms == step.at_ms and self._steps[0].kind in ("inbound", "sweep"):
            found.append(heapq.heappop(self._steps))
        return found

    def _periodic_sweep(self, at_ms: int) -> None:
        """A sweep every sweep interval from `at_ms`, until a recorded sweep sets a new phase."""
        phase = self._phase

        async def sweep() -> None:
            if phase != self._phase:
                return
            now = self.clock.now_ms
            if not any(start <= now < end for start, end in self.quiet):
                await self.upkeep.sweep()
            self._periodic_sweep(now + self.sweep_ms)

        self.at(at_ms, "sweep", sweep)

    def recorded_sweep(self, at_ms: int) -> None:
        """A sweep the recorded router ran at `at_ms` (its decisions are in the recording): the replay sweeps then
        too, and keeps the interval from there, so offers time out when they did in the recording."""

        async def sweep() -> None:
            self._phase += 1
            await self.upkeep.sweep()
            self._periodic_sweep(self.clock.now_ms + self.sweep_ms)

        self.at(at_ms, "sweep", sweep)

    # -- what the recording says happened -------------------------------------------------------------------

    def inbound(self, at_ms: int, batch: Sequence[InboundMessage]) -> None:
        """Route a batch of recorded inbound messages at `at_ms`."""

        async def route() -> None:
            await self.router.handle_inbound(batch)

        self.at(at_ms, "inbound", route)

    def presence_record(self, timed: Timed[AgentPresence]) -> None:
        """Write a recorded agent state when presence changed it (`changed_at`: the router's reads see it from
        then on), and hand the records presence's store publishes to the router's presence handler when the
        recorded one reached the topic."""
        changed = timed.record.changed_at.ToMilliseconds() or timed.at_ms
        published: list[AgentPresence] = []

        async def write() -> None:
            await self._apply_presence(timed.record)
            published.extend(self.published.take_presence())

        async def handle() -> None:
            if published:
                await self.upkeep.handle_presence(published)

        self.at(min(changed, timed.at_ms), "presence", write)
        self.at(timed.at_ms, "presence", handle)

    async def _apply_presence(self, record: AgentPresence) -> None:
        """Write a recorded agent state the way presence does: profile first, then the status change if any."""
        tenant, agent = record.tenant_id, record.agent_id
        if self.configs.get(tenant) is None or not agent:
            return
        capacity = {CHANNEL_NAMES[c.channel]: c.slots for c in record.capacity if c.channel in CHANNEL_NAMES}
        await self.presence.update_profile(
            tenant,
            agent,
            groups=list(record.skill_groups),
            languages=list(record.languages),
            capacity=capacity,
            display_name=record.display_name,
            multiplier=(record.capacity_multiplier or 1.0) * self.capacity_multiplier,
            temporary=record.temporary,
            proficiency=dict(record.proficiency),
        )
        state = await self.presence.get_agent(tenant, agent)
        new = PROTO_TO_STATUS.get(record.status, Status.OFFLINE)
        current = state.status if state is not None else Status.OFFLINE
        # A status the recorded router set (away after missed offers) is the replay's router's to set, or not.
        if new is current or record.changed_by == "router":
            return
        if current is Status.OFFLINE:
            await self.presence.login(tenant, agent, initial_status=new, changed_by=record.changed_by or "agent")
            return
        wrap_up_s = None
        if new is Status.WRAP_UP and record.HasField("wrap_up_until"):
            wrap_up_s = max(0.0, (record.wrap_up_until.ToMilliseconds() - self.clock.now_ms) / 1000)
        await self.presence.set_status(tenant, agent, new, record.changed_by or "agent", None, record.reason, wrap_up_s)

    # -- the agents' answers to the replay's decisions ------------------------------------------------------

    def _react(self) -> None:
        """Schedule the agents' answers to the decisions made since the last step."""
        events = self.sink.events[self._seen :]
        self._seen = len(self.sink.events)
        for event in events:
            conv, agent = event.conversation_id, event.agent_id
            if event.type == RoutingEventType.ROUTING_EVENT_OFFERED:
                self._answer_offer(event, self._offers[(conv, agent)])
                self._offers[(conv, agent)] += 1
            elif _owner_of(event):
                self._first_owned.setdefault(conv, self.clock.now_ms)
                self._end_ownership(event, self._owned[(conv, agent)])
                self._owned[(conv, agent)] += 1

    def _recorded(self, event: RoutingEvent, actions: Sequence[Action | None], nth: int) -> bool:
        """Re-enact the agent's recorded `nth` action (None: it did nothing) when there is one."""
        if nth >= len(actions):
            return False
        action = actions[nth]
        if action is not None:
            self._act(event, action, self.clock.now_ms + action.delay_ms)
        return True

    def _answer_offer(self, event: RoutingEvent, nth: int) -> None:
        if self._recorded(event, self.behaviour.answers.get((event.conversation_id, event.agent_id), []), nth):
            return
        conv = event.conversation_id
        delay = self.behaviour.accept_delay_ms.get(conv, self.behaviour.typical_accept_ms())
        self._act(event, Action("accept", delay), self.clock.now_ms + delay)

    def _end_ownership(self, event: RoutingEvent, nth: int) -> None:
        if self._recorded(event, self.behaviour.endings.get((event.conversation_id, event.agent_id), []), nth):
            return
        conv = event.conversation_id
        handle = self.behaviour.handle_ms.get(conv)
        if handle is None:
            config = self.configs.get(event.tenant_id)
            group = event.skill_group
            known = config is not None and group in {g.name for g in config.skill_groups}
            handle = int(config.group(group).avg_handle_s * 1000) if config is not None and known else 0
        if handle:
            at = max(self.clock.now_ms, self._first_owned[conv] + handle)
            self._act(event, Action("close", at - self.clock.now_ms), at)

    def _act(self, event: RoutingEvent, action: Action, at_ms: int) -> None:
        """Send the agent's command at `at_ms`, under the epoch the agent's desktop got with the event."""

        async def send() -> None:
            state = await self.presence.get_agent(event.tenant_id, event.agent_id)
            command = AgentCommand(
                command_id=uuid.uuid4().hex,
                tenant_id=event.tenant_id,
                agent_id=event.agent_id,
                conversation_id=event.conversation_id,
                type=COMMANDS[action.kind],
                epoch=event.epoch,
                reason=action.reason,
                wrap_up_code=action.wrap_up_code,
                transfer_to_agent=action.to_agent,
                transfer_to_group=action.to_group,
                session_epoch=state.session_epoch if state is not None else 0,
            )
            command.at.FromMilliseconds(self.clock.now_ms)
            await self.router.handle_commands([command])

        self.at(at_ms, "action", send)


def inbound_batches(
    inbound: Sequence[Timed[InboundMessage]], handled_at: dict[str, int]
) -> list[tuple[int, list[InboundMessage]]]:
    """The recorded messages in the batches the recorded router handled them in, at the time it did.

    A decision's time is the router's clock when it took the batch, so messages whose decisions share a time were
    one batch: planned together, with the same time of assignment (which decides later ties between equally
    loaded agents). A message without a recorded decision keeps its topic time; a conversation's messages stay in
    their order.
    """
    timed: list[tuple[int, int, InboundMessage]] = []
    last: dict[str, int] = {}
    for index, item in enumerate(inbound):
        conv = item.record.conversation_id
        at = max(handled_at.get(item.record.message_id, item.at_ms), last.get(conv, 0))
        last[conv] = at
        timed.append((at, index, item.record))
    batches: list[tuple[int, list[InboundMessage]]] = []
    for at, _, message in sorted(timed, key=lambda t: (t[0], t[1])):
        if batches and batches[-1][0] == at:
            batches[-1][1].append(message)
        else:
            batches.append((at, [message]))
    return batches


def schedule(
    replay: Reenactment,
    inbound: Sequence[Timed[InboundMessage]],
    presence: Sequence[Timed[AgentPresence]],
    handled_at: dict[str, int],
    sweeps: Sequence[int] = (),
    quiet: Sequence[tuple[int, int]] = (),
) -> None:
    """Put every recorded inbound message (in its recorded batch), presence record and sweep on the replay's
    timeline; `quiet`: spans in which the recorded router did not sweep."""
    replay.quiet = quiet
    for at_ms, batch in inbound_batches(inbound, handled_at):
        replay.inbound(at_ms, batch)
    for record in presence:
        replay.presence_record(record)
    for at_ms in sweeps:
        replay.recorded_sweep(at_ms)
