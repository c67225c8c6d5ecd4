"""Replay a recorded day against a routing config, offline: "what would last Double 11 have looked like?"

Input: a recording of inbound messages and routing events — JSON lines (`{"type": "InboundMessage", "record":
{...}}` per line, protobuf JSON) or the topics themselves (`--from-topics`). The recorded routing events give
the baseline (waits, service level, load per agent) and each conversation's handle time (assigned → closed).
The simulation replays the first message of every conversation through the pure routing core with the new
config — classification, candidate chain, capacity, queue priority and aging, overflow after `after_s` — with the
same agents (a presence roster, or the agents seen in the recording), and prints how the figures would change.

    python -m switchboard.router.replay recording.jsonl --config config/routing/tmall-flagship.yaml
    switchboard replay --from-topics --config new-rules.yaml --roster config/agents/dev-agents.yaml
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from google.protobuf import json_format
from google.protobuf.message import Message

from switchboard.contracts import InboundMessage, RoutingEvent, RoutingEventType
from switchboard.router.chain import AgentView, plan, take
from switchboard.router.classify import classify
from switchboard.router.config import TenantRouting, load_config_file
from switchboard.router.engine import facts_of
from switchboard.router.events import CHANNEL_NAMES
from switchboard.router.scoring import stored_score

RECORDS: dict[str, type[Message]] = {"InboundMessage": InboundMessage, "RoutingEvent": RoutingEvent}


@dataclass
class Recording:
    """First messages of conversations and the recorded routing events, of one tenant."""

    arrivals: list[tuple[int, InboundMessage]] = field(default_factory=list)
    events: list[RoutingEvent] = field(default_factory=list)


@dataclass
class Figures:
    """What an operator compares: waits, service level, load per agent."""

    waits_s: list[float] = field(default_factory=list)
    unanswered: int = 0
    handled: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    busy_s: dict[str, float] = field(default_factory=lambda: defaultdict(float))


def read_jsonl(lines: Iterable[str], tenant: str) -> Recording:
    """Parse a JSON-lines recording, keeping one tenant's records."""
    recording, seen = Recording(), set[str]()
    for line in lines:
        if not line.strip():
            continue
        entry = json.loads(line)
        message = json_format.ParseDict(entry["record"], RECORDS[entry["type"]]())
        add(recording, seen, message, tenant)
    return recording


def add(recording: Recording, seen: set[str], message: Message, tenant: str) -> None:
    """Add one record to the recording (later messages of a conversation are not arrivals)."""
    if getattr(message, "tenant_id", "") != tenant:
        return
    if isinstance(message, InboundMessage) and message.conversation_id not in seen:
        seen.add(message.conversation_id)
        at = message.received_at.ToMilliseconds() or message.sent_at.ToMilliseconds()
        recording.arrivals.append((at, message))
    elif isinstance(message, RoutingEvent):
        recording.events.append(message)


def baseline(recording: Recording, target_s: float) -> tuple[Figures, dict[str, float]]:
    """Figures of what happened, and each conversation's recorded handle time (assigned → closed)."""
    figures = Figures()
    assigned: dict[str, tuple[int, str]] = {}
    handle: dict[str, float] = {}
    arrived = {m.conversation_id: at for at, m in recording.arrivals}
    for event in sorted(recording.events, key=lambda e: e.at.ToMilliseconds()):
        at, conv = event.at.ToMilliseconds(), event.conversation_id
        if event.type in (RoutingEventType.ROUTING_EVENT_ASSIGNED, RoutingEventType.ROUTING_EVENT_ACCEPTED):
            if conv not in assigned:
                start = arrived.get(conv, event.enqueued_at.ToMilliseconds() or at)
                figures.waits_s.append(max(0.0, (at - start) / 1000))
                figures.handled[event.agent_id] += 1
            assigned[conv] = (at, event.agent_id)
        elif event.type == RoutingEventType.ROUTING_EVENT_CLOSED and conv in assigned:
            start, agent = assigned[conv]
            handle[conv] = (at - start) / 1000
            figures.busy_s[event.agent_id or agent] += handle[conv]
    figures.unanswered = len({c for c in arrived if c not in assigned})
    return figures, handle


class Simulation:
    """Arrivals replayed through the pure routing core; conversations close after their recorded handle time."""

    def __init__(
        self, config: TenantRouting, recording: Recording, agents: Sequence[AgentView], handle: dict[str, float]
    ) -> None:
        self.config, self.handle = config, handle
        self.figures = Figures()
        self.pool = {a.agent_id: a for a in agents}
        self.clock: list[tuple[int, int, str, str, str]] = []  # (ms, order, kind, conversation, agent)
        self.queue: list[tuple[float, int, str, str, str, int]] = []  # (score, order, conv, group, channel, since)
        arrivals = sorted(recording.arrivals, key=lambda a: a[0])
        self.by_conv = {m.conversation_id: m for _, m in arrivals}
        self.order = 0
        for at, message in arrivals:
            self._at(at, "arrive", message.conversation_id)

    def _at(self, ms: int, kind: str, conv: str = "", agent: str = "") -> None:
        self.order += 1
        heapq.heappush(self.clock, (ms, self.order, kind, conv, agent))

    def _channel(self, conv: str) -> str:
        return CHANNEL_NAMES.get(self.by_conv[conv].channel, "chat")

    def _assign(self, now: int, conv: str, agent: AgentView, since: int) -> None:
        take(agent, self._channel(conv), now)
        self.figures.waits_s.append((now - since) / 1000)
        self.figures.handled[agent.agent_id] += 1
        group = classify(self.config, facts_of(self.by_conv[conv])).group
        duration = self.handle.get(conv, self.config.group(group).avg_handle_s)
        self.figures.busy_s[agent.agent_id] += duration
        self._at(now + int(duration * 1000), "close", conv, agent.agent_id)

    def _groups(self, group: str, waited_ms: int) -> list[str]:
        rings = self.config.group(group).overflow
        return [group, *(r.group for r in rings if r.after_s is not None and waited_ms >= r.after_s * 1000)]

    def _drain(self, now: int) -> None:
        for entry in sorted(self.queue):
            _, _, conv, group, channel, since = entry
            for name in self._groups(group, now - since):
                chosen = plan(self.config, name, channel, list(self.pool.values())).candidates
                if chosen:
                    self.queue.remove(entry)
                    self._assign(now, conv, self.pool[chosen[0].agent_id], since)
                    break

    def _arrive(self, now: int, conv: str) -> None:
        found = classify(self.config, facts_of(self.by_conv[conv]))
        channel = self._channel(conv)
        chosen = plan(self.config, found.group, channel, list(self.pool.values())).candidates
        if chosen:
            self._assign(now, conv, self.pool[chosen[0].agent_id], now)
        else:
            self.order += 1
            score = stored_score(now, found.priority, self.config.queue.aging_s_per_point)
            self.queue.append((score, self.order, conv, found.group, channel, now))

    def run(self) -> Figures:
        """Replay every arrival; what still waits a day after the last event counts as never answered."""
        while self.clock:
            now, _, kind, conv, agent_id = heapq.heappop(self.clock)
            if kind == "close":
                agent, channel = self.pool[agent_id], self._channel(conv)
                agent.used[channel] = max(0, agent.used.get(channel, 0) - 1)
            elif kind == "arrive":
                self._arrive(now, conv)
            self._drain(now)
            if self.queue and not self.clock and any(now - e[5] < 24 * 3600 * 1000 for e in self.queue):
                # Time-based overflow may still free a waiting conversation: look again a second later.
                self._at(now + 1000, "tick")
        self.figures.unanswered = len(self.queue)
        return self.figures


def simulate(
    config: TenantRouting, recording: Recording, agents: Sequence[AgentView], handle: dict[str, float]
) -> Figures:
    """Route every recorded arrival with `config` over the agents (see Simulation)."""
    return Simulation(config, recording, agents, handle).run()


def agents_from(roster: Path | None, tenant: str, recording: Recording, multiplier: float) -> list[AgentView]:
    """The agents to simulate: a presence roster's, or those the recording shows, with default slots."""
    if roster is not None:
        from switchboard.state.roster import load_roster

        found = next((t for t in load_roster(roster).tenants if t.tenant_id == tenant), None)
        if found is None:
            raise SystemExit(f"{roster}: no tenant {tenant!r}")
        return [
            AgentView(a.agent_id, "available", frozenset(a.groups), a.capacity.as_dict(), multiplier, {})
            for a in found.agents
        ]
    groups: dict[str, set[str]] = defaultdict(set)
    for event in recording.events:
        if event.agent_id and event.skill_group:
            groups[event.agent_id].add(event.skill_group)
    slots = {"chat": 5, "email": 10, "phone": 1}
    return [AgentView(a, "available", frozenset(g), dict(slots), multiplier, {}) for a, g in sorted(groups.items())]


def _pct(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(before: Figures, after: Figures, target_s: float, span_s: float, out: TextIO) -> None:
    """Print the comparison."""

    def row(name: str, a: str, b: str) -> None:
        out.write(f"{name:<28}{a:>14}{b:>14}\n")

    def level(f: Figures) -> str:
        total = len(f.waits_s) + f.unanswered
        return f"{sum(1 for w in f.waits_s if w <= target_s) / total:.1%}" if total else "-"

    row("", "recorded", "replayed")
    row("conversations answered", str(len(before.waits_s)), str(len(after.waits_s)))
    row("never answered", str(before.unanswered), str(after.unanswered))
    for name, q in (("wait p50 (s)", 0.5), ("wait p90 (s)", 0.9), ("wait max (s)", 1.0)):
        row(name, f"{_pct(before.waits_s, q):.1f}", f"{_pct(after.waits_s, q):.1f}")
    mean = [sum(f.waits_s) / len(f.waits_s) if f.waits_s else 0.0 for f in (before, after)]
    row("wait mean (s)", f"{mean[0]:.1f}", f"{mean[1]:.1f}")
    row(f"service level ({target_s:.0f}s)", level(before), level(after))
    out.write("\nagent load (conversations taken / conversations open on average over the span)\n")
    for agent in sorted(set(before.handled) | set(after.handled)):
        a = f"{before.handled.get(agent, 0)} / {before.busy_s.get(agent, 0) / span_s:.1f}"
        b = f"{after.handled.get(agent, 0)} / {after.busy_s.get(agent, 0) / span_s:.1f}"
        row(f"  {agent}", a, b)


async def read_topics(bootstrap: str, prefix: str, tenant: str, save: Path | None) -> Recording:
    """Read the inbound and routing topics from the start to their current end."""
    from aiokafka import AIOKafkaConsumer

    from switchboard.contracts import TYPE_HEADER, decode
    from switchboard.runtime.topics import Topics

    topics = Topics(prefix)
    consumer = AIOKafkaConsumer(
        topics.inbound,
        topics.routing,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    recording, seen = Recording(), set[str]()
    sink = save.open("w", encoding="utf-8") if save else None
    try:
        ends = await consumer.end_offsets(list(consumer.assignment()))
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            for records in (await consumer.getmany(timeout_ms=1000, max_records=5000)).values():
                for r in records:
                    headers = {k: v.decode() for k, v in r.headers}
                    message = decode(headers.get(TYPE_HEADER), r.value)
                    add(recording, seen, message, tenant)
                    if sink is not None and getattr(message, "tenant_id", "") == tenant:
                        record = json_format.MessageToDict(message)
                        sink.write(json.dumps({"type": type(message).__name__, "record": record}) + "\n")
    finally:
        await consumer.stop()
        if sink is not None:
            sink.close()
    return recording


def main(argv: list[str] | None = None) -> int:
    """Entry point: `python -m switchboard.router.replay` / `switchboard replay`."""
    import os

    parser = argparse.ArgumentParser(prog="switchboard replay", description=__doc__.split("\n\n")[0])
    parser.add_argument("recording", nargs="?", type=Path, help="JSON lines of InboundMessage and RoutingEvent")
    parser.add_argument("--config", type=Path, required=True, help="the routing config to replay with")
    parser.add_argument("--tenant", default="", help="tenant to replay (default: the config's)")
    parser.add_argument("--roster", type=Path, default=None, help="presence roster of the agents to simulate")
    parser.add_argument("--capacity-multiplier", type=float, default=1.0, help="surge factor for every agent")
    parser.add_argument("--from-topics", action="store_true", help="read sb.inbound.v1 and sb.routing.v1")
    parser.add_argument("--save", type=Path, default=None, help="with --from-topics: write the recording here")
    args = parser.parse_args(argv)
    config = load_config_file(args.config)
    tenant = args.tenant or config.tenant
    if args.from_topics:
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092")
        recording = asyncio.run(read_topics(bootstrap, os.environ.get("SB_TOPIC_PREFIX", ""), tenant, args.save))
    elif args.recording is not None:
        with args.recording.open(encoding="utf-8") as lines:
            recording = read_jsonl(lines, tenant)
    else:
        parser.error("give a recording file or --from-topics")
    if not recording.arrivals:
        print(f"no inbound messages of tenant {tenant!r} in the recording")
        return 1
    target = config.queue.service_level_target_s
    before, handle = baseline(recording, target)
    agents = agents_from(args.roster, tenant, recording, args.capacity_multiplier)
    after = simulate(config, recording, agents, handle)
    times = [at for at, _ in recording.arrivals] + [e.at.ToMilliseconds() for e in recording.events]
    span_s = max(1.0, (max(times) - min(times)) / 1000)
    print(f"tenant {tenant}: {len(recording.arrivals)} conversations over {span_s:.0f}s, {len(agents)} agents")
    report(before, after, target, span_s, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
