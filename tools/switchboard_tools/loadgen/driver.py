"""One load-test run against a stack: agents log on, customers write, the operator surges, everything is recorded.

The run is bounded: arrivals stop at the scenario's duration, the drain waits at most `limits.drain_s` for the last
deliveries, and the whole run is cut at `limits.max_run_s` whatever happens. Times are wall-clock seconds
(`time.time()`), the clock the services stamp their records with on this machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any

import aiohttp
from redis.asyncio import Redis
from tqdm import tqdm  # type: ignore[import-untyped]

from switchboard.runtime.logs import get_logger
from switchboard.runtime.redis_client import redis_for
from switchboard_tools.loadgen.accounting import Delivery, Sent
from switchboard_tools.loadgen.agents import SimulatedAgent
from switchboard_tools.loadgen.customers import (
    CustomerContext,
    Endpoints,
    PhoneStream,
    Signals,
    chat_conversation,
    email_conversation,
    webhook_conversation,
)
from switchboard_tools.loadgen.fixtures import Credentials, hotline
from switchboard_tools.loadgen.http import HTTP_ERRORS, run_session
from switchboard_tools.loadgen.observations import ConversationTrack, Observations
from switchboard_tools.loadgen.probes import TAG, QueueSampler, RoutingProbe
from switchboard_tools.loadgen.scenario import Scenario
from switchboard_tools.loadgen.schedule import AgentShift, Schedule, SurgeToggle
from switchboard_tools.loadgen.stats import AgentSession

log = get_logger(__name__)

DELIVERIES = ("assigned", "message", "transcript")
LOGIN_TIMEOUT_S = 60.0
# How long the end of a run waits for its cancelled tasks (agents closing their desktops, customers their sockets).
FINISH_TIMEOUT_S = 30.0


def _iso(at: float) -> str:
    """An RFC 3339 time with its zone, as the operator API's schedules take it."""
    return datetime.fromtimestamp(at, tz=UTC).isoformat(timespec="milliseconds")


def _rfc3339(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    with contextlib.suppress(ValueError):
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return None


class Recorder:
    """The driver's bookkeeping of what customers sent and what desktops showed."""

    def __init__(self, obs: Observations, schedule: Schedule, progress: tqdm | None) -> None:
        self.obs = obs
        self.progress = progress
        self.by_tag = {tag: c for c in schedule.conversations for tag in c.tags}
        self.signals = Signals({tag: c.conversation_key for tag, c in self.by_tag.items()})
        self.first_tag = {c.conversation_key: c.messages[0].tag for c in schedule.conversations}
        self.conversation_of_tag: dict[str, str] = {}
        self.received_at: dict[str, float] = {}  # message id → the adapter's receive time
        self.untagged: Counter[str] = Counter()
        self.first_offer: dict[str, float] = {}
        self.first_assigned: dict[str, tuple[float, str]] = {}
        self.closed: dict[str, tuple[float, float]] = {}

    def sent(self, sent: Sent) -> None:
        """A channel acknowledged (or refused) a message."""
        self.obs.ledger.record_sent(sent)
        self.obs.series.add("messages_sent", self.obs.elapsed(sent.sent_at))
        conv = self.by_tag[sent.tag]
        if sent.tag == self.first_tag[conv.conversation_key]:
            self.obs.series.add("conversations_started", self.obs.elapsed(sent.sent_at))
        if self.progress is not None:
            self.progress.update(1)

    def desk_event(self, agent: AgentShift, frame: dict[str, Any], received_at: float) -> None:
        """An event frame at a simulated desktop."""
        event = str(frame.get("event", ""))
        conversation_id = str(frame.get("conversation_id", ""))
        message = frame.get("message") or {}
        match = TAG.search(str(message.get("text", "")))
        tag = match.group(1) if match else None
        if tag is not None and tag in self.by_tag:
            self.conversation_of_tag.setdefault(tag, conversation_id)
        if message.get("message_id") and (at := _rfc3339(message.get("received_at"))) is not None:
            self.received_at[str(message["message_id"])] = at
        # The first offer and assignment per conversation id; matched to a customer's conversation at the end,
        # because a phone call's first desk event carries the call-started record, which has no tag.
        if event in ("offer", "assigned"):
            self.first_offer.setdefault(conversation_id, received_at)
        if event == "assigned":
            self.first_assigned.setdefault(conversation_id, (received_at, agent.agent_id))
        if event not in DELIVERIES:
            return
        if tag is None:
            self.untagged[event] += 1
            return
        self.obs.ledger.record_delivery(
            Delivery(
                tag,
                agent.tenant_id,
                agent.agent_id,
                conversation_id,
                int(frame.get("epoch", 0)),
                event,
                received_at,
                str(message.get("message_id", "")),
            )
        )
        self.obs.series.add("messages_delivered", self.obs.elapsed(received_at))
        self.signals.delivered(tag)

    def snapshot_message(
        self, agent: AgentShift, conversation_id: str, epoch: int, message: dict[str, Any], received_at: float
    ) -> None:
        """A message of this run the desktop first showed from a snapshot (events folded into it were never sent as
        events): delivered under the conversation's epoch in the snapshot. A snapshot also shows earlier runs'
        messages of the conversations it holds; those are not this run's deliveries."""
        if not self.in_run(message):
            return
        frame = {"event": "message", "conversation_id": conversation_id, "epoch": epoch, "message": message}
        Recorder.desk_event(self, agent, frame, received_at)  # the bookkeeping only: it was no event

    def in_run(self, message: dict[str, Any]) -> bool:
        """Whether a desk message carries the tag of a message this run sent."""
        match = TAG.search(str(message.get("text", "")))
        return match is not None and match.group(1) in self.by_tag

    def handled(self, agent: AgentShift, conversation_id: str, answered_at: float, closed_at: float) -> None:
        """An agent closed a conversation."""
        self.closed.setdefault(conversation_id, (answered_at, closed_at))

    def resolve(self, on_topic: dict[str, str]) -> None:
        """Build each conversation as the system saw it (a customer writing after a close opens a new one).

        `on_topic` maps tags to the conversation id the adapter gave them (from the inbound topic); a conversation
        starts with its earliest acknowledged message and is answered when its first ASSIGNED reached a desktop.
        """
        conversation_of = {**self.conversation_of_tag, **on_topic}
        tracks: dict[str, ConversationTrack] = {}
        for tag, conversation_id in conversation_of.items():
            sent = self.obs.ledger.sent.get(tag)
            if sent is None or not sent.accepted:
                continue
            track = tracks.get(conversation_id)
            if track is None or sent.sent_at < track.started_at:
                tracks[conversation_id] = ConversationTrack(sent.tenant_id, sent.channel, sent.sent_at)
        for conversation_id, track in tracks.items():
            if (offered := self.first_offer.get(conversation_id)) is not None:
                track.offered_at = offered
                self.obs.offer_latencies_s.append(max(0.0, offered - track.started_at))
            if (assigned := self.first_assigned.get(conversation_id)) is not None:
                track.answered_at, track.agent_id = assigned
            if (closed := self.closed.get(conversation_id)) is not None:
                track.closed_at = closed[1]
                if track.answered_at is None:
                    track.answered_at = closed[0]
        self.obs.conversations = tracks


class Run:
    """Drives one scenario schedule against one stack."""

    # The desktop each agent shift runs (a subclass may run one that behaves otherwise, e.g. resumes on a drop).
    agent_class: type[SimulatedAgent] = SimulatedAgent

    def __init__(
        self,
        scenario: Scenario,
        schedule: Schedule,
        endpoints: Endpoints,
        creds: Credentials,
        run_name: str,
        progress: bool = True,
        profile: str = "on",
    ) -> None:
        self.scenario = scenario
        self.schedule = schedule if profile == "on" else schedule.without_surge()
        self.endpoints = endpoints
        self.creds = creds
        self.obs = Observations(
            run_name=run_name, scenario=scenario.name, seed=schedule.seed, started_at=0.0, profile=profile
        )
        self.bar = tqdm(total=schedule.message_count, desc=run_name, unit="msg", disable=not progress, mininterval=1.0)
        self.recorder = Recorder(self.obs, schedule, self.bar)
        self.stop = asyncio.Event()
        self.agents: list[SimulatedAgent] = []
        self.online: Counter[str] = Counter()
        self.customers: CustomerContext | None = None
        self.customer_tasks: list[asyncio.Task[Any]] = []

    async def execute(self) -> Observations:
        """Run the whole schedule (bounded by limits.max_run_s after the agents logged on)."""
        tenants = [t.id for t in self.scenario.all_tenants()]
        probe = RoutingProbe(self.endpoints.kafka_bootstrap, self.endpoints.topic_prefix, tenants)
        probe.on_bot_answer = self.recorder.signals.bot_answer
        probe.on_inbound = self.recorder.signals.on_topic
        await probe.start()
        redis = redis_for(self.endpoints.redis_url)
        tasks: list[asyncio.Task[Any]] = []
        try:
            async with run_session() as http:
                tasks = await self._start(http, redis, tenants)
                async with asyncio.timeout(self.scenario.limits.max_run_s):
                    await self._arrivals_and_drain(probe)
        except TimeoutError:
            self.obs.notes.append(f"cut at limits.max_run_s = {self.scenario.limits.max_run_s:.0f}s")
        finally:
            self.stop.set()
            await self._finish(tasks)
            await probe.stop()
            await redis.aclose()
            self.bar.close()
        self._collect(probe)
        return self.obs

    async def _start(self, http: aiohttp.ClientSession, redis: Redis, tenants: list[str]) -> list[asyncio.Task[Any]]:
        first = [s for s in self.schedule.agents if s.on_s == 0]
        later = [s for s in self.schedule.agents if s.on_s > 0]
        leave = {s.agent_id: asyncio.Event() for s in self.schedule.agents}
        tasks = [
            asyncio.create_task(self._agent(http, s, 0.0, leave[s.agent_id]), name=f"agent:{s.agent_id}") for s in first
        ]
        await self._wait_logged_on(len(first), tasks)
        self.obs.started_at = time.time()
        loop = asyncio.get_running_loop()
        for shift in self.schedule.agents:
            if shift.off_s is not None:
                loop.call_later(shift.off_s, leave[shift.agent_id].set)
        tasks += [
            asyncio.create_task(self._agent(http, s, s.on_s, leave[s.agent_id]), name=f"agent:{s.agent_id}")
            for s in later
        ]
        tasks += [
            asyncio.create_task(self._surge(http, toggle), name=f"surge:{toggle.tenant_id}")
            for toggle in self.schedule.surges
        ]
        tasks.append(asyncio.create_task(self._customers(http), name="customers"))
        sampler = QueueSampler(redis, self.endpoints.key_prefix, tenants)
        tasks.append(asyncio.create_task(sampler.run(1.0, self._queue_sample), name="queue-sampler"))
        return tasks

    async def _wait_logged_on(self, count: int, tasks: list[asyncio.Task[Any]]) -> None:
        async with asyncio.timeout(LOGIN_TIMEOUT_S):
            while sum(1 for a in self.agents if a.logged_on_at is not None) < count:
                failed = [t for t in tasks if t.done() and t.exception() is not None]
                if failed:
                    raise RuntimeError(f"an agent could not log on: {failed[0].exception()!r}")
                await asyncio.sleep(0.05)

    async def _agent(self, http: aiohttp.ClientSession, shift: AgentShift, delay: float, leave: asyncio.Event) -> None:
        await asyncio.sleep(delay)
        agent = self.agent_class(
            shift,
            self.scenario.agents,
            self.creds.agent_password(shift.tenant_id, shift.agent_id),
            self.endpoints.gateway_http,
            self.recorder,
        )
        self.agents.append(agent)
        self._online(shift.tenant_id, +1)
        try:
            await agent.run(http, leave)
        except Exception as exc:  # an agent's failure is a finding of the run, not a crash of it
            self.obs.errors[f"agent:{type(exc).__name__}"] += 1
            log.warning("loadgen_agent_failed", agent_id=shift.agent_id, error=repr(exc))
            if agent.logged_on_at is None and self.obs.started_at == 0.0:
                raise
        finally:
            self._online(shift.tenant_id, -1)
            self._agent_done(agent)

    def _agent_done(self, agent: SimulatedAgent) -> None:
        """An agent's desktop has ended (a subclass reads what it saw)."""

    def _online(self, tenant_id: str, change: int) -> None:
        self.online[tenant_id] += change
        self.obs.agents_online.setdefault(tenant_id, []).append((time.time(), self.online[tenant_id]))

    async def _surge(self, http: aiohttp.ClientSession, toggle: SurgeToggle) -> None:
        """The operator defines the surge profile and switches it on (docs/operator-api.md): by hand at its time,
        or with a schedule made now for [its time, the end of the run) that presence's sweep carries out."""
        base = f"{self.endpoints.presence_http}/v1/operator/tenants/{toggle.tenant_id}/surge"
        headers = {"Authorization": f"Bearer {self.creds.operator_token()}"}
        try:
            async with http.put(f"{base}/profiles/{toggle.profile}", json=dict(toggle.body), headers=headers) as resp:
                if resp.status == 422:
                    log.warning("loadgen_surge_refused", tenant_id=toggle.tenant_id, detail=(await resp.text())[:500])
                resp.raise_for_status()
            if toggle.switch == "schedule":
                start = self.obs.started_at + toggle.at_s
                window = {"profile": toggle.profile, "start": _iso(start), "end": _iso(start + self._run_left_s())}
                async with http.post(f"{base}/schedules", json=window, headers=headers) as resp:
                    resp.raise_for_status()
                await asyncio.sleep(toggle.at_s)
                self.obs.surge_on_at[toggle.tenant_id] = await self._active_since(http, base, headers, toggle)
            else:
                await asyncio.sleep(toggle.at_s)
                async with http.post(f"{base}/activate", json={"profile": toggle.profile}, headers=headers) as resp:
                    resp.raise_for_status()
                self.obs.surge_on_at[toggle.tenant_id] = time.time()
        except HTTP_ERRORS as exc:
            self.obs.errors[f"surge:{type(exc).__name__}"] += 1
            log.warning("loadgen_surge_failed", tenant_id=toggle.tenant_id, error=repr(exc))

    def _run_left_s(self) -> float:
        return self.scenario.limits.max_run_s + 60.0

    async def _active_since(
        self, http: aiohttp.ClientSession, base: str, headers: dict[str, str], toggle: SurgeToggle
    ) -> float:
        """When presence's sweep switched the scheduled profile on (polled; its sweep runs every 2 s)."""
        deadline = time.time() + 30.0
        while time.time() < deadline:
            async with http.get(base, headers=headers) as resp:
                view = await resp.json()
            if view.get("active_profile") == toggle.profile:
                return time.time()
            await asyncio.sleep(0.25)
        raise TimeoutError(f"scheduled profile {toggle.profile} not in force 30 s after its start")

    async def _customers(self, http: aiohttp.ClientSession) -> None:
        ctx = CustomerContext(
            self.endpoints,
            self.creds,
            self.obs.started_at,
            self.recorder.sent,
            self._error,
            self.stop,
            http=http,
            signals=self.recorder.signals,
            behaviour=self.obs.behaviour,
        )
        self.customers = ctx
        tenants = [t.id for t in self.scenario.all_tenants()]
        streams = {t: PhoneStream(ctx, t, hotline(i)) for i, t in enumerate(tenants, start=1)}
        linger = self.scenario.conversation.patience_s + self.scenario.agents.handling_time.max_s
        work: list[Coroutine[Any, Any, None]] = []
        for conv in self.schedule.conversations:
            if conv.channel == "chat" and conv.entry == "webhook":
                work.append(webhook_conversation(ctx, conv))
            elif conv.channel == "chat":
                work.append(chat_conversation(ctx, conv, linger))
            elif conv.channel == "email":
                work.append(email_conversation(ctx, conv))
            else:
                work.append(streams[conv.tenant_id].call(conv))
        names = [f"customer:{c.channel}:{c.entry}:{c.conversation_key}" for c in self.schedule.conversations]
        self.customer_tasks = [asyncio.create_task(w, name=n) for w, n in zip(work, names, strict=True)]
        try:
            results = await asyncio.gather(*self.customer_tasks, return_exceptions=True)
            for result in results:
                if isinstance(result, Exception):
                    self._error(f"customer:{type(result).__name__}")
        finally:
            for stream in streams.values():
                await stream.close()

    def _error(self, kind: str) -> None:
        self.obs.errors[kind] += 1

    def _queue_sample(self, depths: dict[str, int]) -> None:
        t = self.obs.elapsed(time.time())
        for label, depth in depths.items():
            if depth or f"queue:{label}" in self.obs.series.points or t < 1:
                self.obs.series.set(f"queue:{label}", t, float(depth))
        self.bar.set_postfix(delivered=len(self.obs.ledger.deliveries), queued=sum(depths.values()), refresh=False)

    async def _arrivals_and_drain(self, probe: RoutingProbe) -> None:
        """Wait for the last planned send, then until every customer sent what they will and every acknowledged
        message reached a desktop or its conversation is not for agents (left, or answered by the bot)."""
        await asyncio.sleep(max(0.0, self.schedule.last_send_s - self.obs.elapsed(time.time())))
        deadline = time.time() + self.scenario.limits.drain_s
        ledger = self.obs.ledger
        while time.time() < deadline:
            deciding = self.customers is None or bool(self.customers.deciding)
            if not deciding:
                open_tags = {t for t, s in ledger.sent.items() if s.accepted} - ledger.delivered_tags()
                if all(probe.settled_without_agent(t) for t in open_tags):
                    return
            await asyncio.sleep(0.5)
        self.obs.notes.append(f"drain ended after {self.scenario.limits.drain_s:.0f}s with deliveries missing")

    async def _finish(self, tasks: list[asyncio.Task[Any]]) -> None:
        """Cancel everything the run started; wait for it, bounded, so a task that ignores its cancellation is
        named in the report's notes instead of holding the run forever."""
        everything = [*tasks, *self.customer_tasks]
        for task in everything:
            task.cancel()
        if everything:
            _, pending = await asyncio.wait(everything, timeout=FINISH_TIMEOUT_S)
            if pending:
                names = sorted(t.get_name() for t in pending)
                self.obs.notes.append(f"{len(pending)} tasks still running after the stop: {', '.join(names[:10])}")
                log.warning("loadgen_tasks_left", count=len(pending), tasks=names[:50])
        self.obs.ended_at = time.time()

    def _collect(self, probe: RoutingProbe) -> None:
        obs = self.obs
        self.recorder.resolve({tag: seen.conversation_id for tag, seen in probe.inbound.items()})
        obs.routing_event_times = list(probe.times)
        obs.inbound_times = list(probe.inbound_times)
        obs.whereabouts = {tag: probe.whereabouts(tag, obs.started_at) for tag in obs.ledger.undelivered()}
        obs.stages = probe.stages()
        obs.routing_event_types.update(probe.types)
        obs.events = list(probe.events)
        received_at = {seen.message_id: seen.received_at for seen in probe.inbound.values()}
        received_at.update(self.recorder.received_at)
        for message_id, decided_at in probe.first_decision.items():
            received = received_at.get(message_id)
            if received is not None:
                obs.decision_latencies_s.append(max(0.0, decided_at - received))
        for kind, count in self.recorder.untagged.items():
            obs.notes.append(f"{count} {kind} events carried no load-test message (e.g. call started)")
        asked = obs.behaviour["asked_human"]
        # Planned messages plus asks for a human, less those customers did not send because they had left.
        not_sent = self.schedule.message_count + asked - len(obs.ledger.sent) - obs.behaviour["skipped"]
        if not_sent:
            obs.notes.append(f"{not_sent} planned messages were never acknowledged nor refused by a channel")
        for agent in self.agents:
            on = agent.logged_on_at
            if on is None:
                continue
            off = agent.logged_off_at or obs.ended_at
            slots = self.scenario.agents.capacity.get("chat", 1)
            obs.sessions.append(
                AgentSession(agent.shift.tenant_id, agent.shift.agent_id, off - on, agent.busy_s, agent.handled, slots)
            )
