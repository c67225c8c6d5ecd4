"""Replay a recorded day through the router with other rules: "what would last Double 11 have looked like?"

Input: a recording of the inbound, routing, presence and command topics — the topics themselves
(`--from-topics`, optionally `--save`d) or JSON lines (`{"type": "InboundMessage", "at": ms, "record": {...}}`
per line, protobuf JSON; `at` is the record's topic timestamp). The replay runs the router's own handlers on a
scratch Redis with a virtual clock (`reenact.py`): the recorded messages at their times, the agents' presence
over time, the agents' recorded answers, sweeps every sweep interval. It prints the figures an operator compares
(waits, service level, load per agent), recorded vs replayed, and how often the replay gave a conversation to
the same skill group and agent as the recording, with the first conversations where it did not.

    python -m switchboard.router.replay day.jsonl --config config/routing/
    switchboard replay --from-topics --save day.jsonl --config new-rules.yaml
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from google.protobuf import json_format
from google.protobuf.message import Message

from switchboard.contracts import AgentCommand, AgentPresence, InboundMessage, RoutingEvent, RoutingEventType
from switchboard.router.reenact import Behaviour, Reenactment, Timed, schedule, scratch_redis
from switchboard.router.reload import ConfigStore, load_routing_file
from switchboard.router.settings import RouterSettings
from switchboard.runtime.settings import ServiceSettings

RECORDS: dict[str, type[Message]] = {
    "InboundMessage": InboundMessage,
    "RoutingEvent": RoutingEvent,
    "AgentPresence": AgentPresence,
    "AgentCommand": AgentCommand,
}
OWNED = (RoutingEventType.ROUTING_EVENT_ASSIGNED, RoutingEventType.ROUTING_EVENT_ACCEPTED)


@dataclass
class Recording:
    """The recorded records of the replayed tenants, each with its time."""

    inbound: list[Timed[InboundMessage]] = field(default_factory=list)
    events: list[RoutingEvent] = field(default_factory=list)
    presence: list[Timed[AgentPresence]] = field(default_factory=list)
    commands: list[Timed[AgentCommand]] = field(default_factory=list)

    def add(self, message: Message, at_ms: int | None = None) -> None:
        """Add one record; without a topic timestamp, its own time stands for when it was recorded."""
        if isinstance(message, InboundMessage):
            own = message.received_at.ToMilliseconds() or message.sent_at.ToMilliseconds()
            self.inbound.append(Timed(at_ms or own, message))
        elif isinstance(message, RoutingEvent):
            self.events.append(message)
        elif isinstance(message, AgentPresence):
            self.presence.append(Timed(at_ms or message.changed_at.ToMilliseconds(), message))
        elif isinstance(message, AgentCommand):
            self.commands.append(Timed(at_ms or message.at.ToMilliseconds(), message))

    def arrivals(self) -> dict[str, int]:
        """Each conversation's first message time, in order of arrival."""
        first: dict[str, int] = {}
        for timed in sorted(self.inbound, key=lambda t: t.at_ms):
            first.setdefault(timed.record.conversation_id, timed.at_ms)
        return first

    def handled_at(self) -> dict[str, int]:
        """When the recorded router took each inbound message (its first decision naming the message)."""
        found: dict[str, int] = {}
        for event in self.events:
            if event.message_id:
                at = event.at.ToMilliseconds()
                found[event.message_id] = min(at, found.get(event.message_id, at))
        return found

    def sweeps(self) -> list[int]:
        """Times the recorded router swept (the decisions only a sweep makes: offers timing out, rings opening)."""
        found = set()
        for event in self.events:
            waited = any(r.startswith("overflow:") and r.endswith(":waited") for r in event.reasons)
            if event.type == RoutingEventType.ROUTING_EVENT_TIMED_OUT or waited:
                found.add(event.at.ToMilliseconds())
        return sorted(found)

    def quiet(self) -> list[tuple[int, int]]:
        """Spans in which the recorded router did not sweep: from an offer's deadline to the sweep that timed it out
        (any sweep in between would have)."""
        deadline: dict[tuple[str, str], int] = {}
        found = []
        for event in sorted(self.events, key=lambda e: e.at.ToMilliseconds()):
            key = (event.conversation_id, event.agent_id)
            if event.type == RoutingEventType.ROUTING_EVENT_OFFERED and event.HasField("offer_deadline"):
                deadline[key] = event.offer_deadline.ToMilliseconds()
            elif event.type == RoutingEventType.ROUTING_EVENT_TIMED_OUT and key in deadline:
                start, end = deadline.pop(key), event.at.ToMilliseconds()
                if start < end:
                    found.append((start, end))
        return sorted(found)

    def span_s(self) -> float:
        """Seconds from the first to the last record (at least one)."""
        times = [t.at_ms for t in self.inbound] + [t.at_ms for t in self.presence]
        times += [e.at.ToMilliseconds() for e in self.events]
        return max(1.0, (max(times) - min(times)) / 1000) if times else 1.0


def read_jsonl(lines: Iterable[str], tenants: set[str]) -> Recording:
    """Parse a JSON-lines recording, keeping the records of these tenants."""
    recording = Recording()
    for line in lines:
        if not line.strip():
            continue
        entry = json.loads(line)
        message = json_format.ParseDict(entry["record"], RECORDS[entry["type"]]())
        if getattr(message, "tenant_id", "") in tenants:
            recording.add(message, entry.get("at"))
    return recording


@dataclass
class Figures:
    """What an operator compares: waits, service level, load per agent."""

    waits_s: list[float] = field(default_factory=list)
    unanswered: int = 0
    handled: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    busy_s: dict[str, float] = field(default_factory=lambda: defaultdict(float))


def figures(arrivals: dict[str, int], events: Iterable[RoutingEvent]) -> Figures:
    """Waits (arrival → first owner), conversations per agent and time each agent held conversations."""
    found = Figures()
    owned: dict[str, tuple[int, str]] = {}
    answered: set[str] = set()
    for event in sorted(events, key=lambda e: e.at.ToMilliseconds()):
        at, conv = event.at.ToMilliseconds(), event.conversation_id
        if event.type in OWNED:
            if conv not in answered:
                answered.add(conv)
                start = arrivals.get(conv, event.enqueued_at.ToMilliseconds() or at)
                found.waits_s.append(max(0.0, (at - start) / 1000))
                found.handled[event.agent_id] += 1
            owned[conv] = (at, event.agent_id)
        elif event.type == RoutingEventType.ROUTING_EVENT_CLOSED and conv in owned:
            start, agent = owned.pop(conv)
            found.busy_s[event.agent_id or agent] += (at - start) / 1000
    found.unanswered = len([c for c in arrivals if c not in answered])
    return found


def outcomes(events: Iterable[RoutingEvent]) -> dict[str, tuple[str, str]]:
    """Each conversation's (skill group, agent): its first owner and the group it was served in; a conversation
    never answered has its group and no agent."""
    found: dict[str, tuple[str, str]] = {}
    for event in sorted(events, key=lambda e: e.at.ToMilliseconds()):
        conv, current = event.conversation_id, found.get(event.conversation_id)
        if event.type in OWNED and (current is None or not current[1]):
            found[conv] = (event.skill_group, event.agent_id)
        elif current is None and event.skill_group:
            found[conv] = (event.skill_group, "")
    return found


@dataclass
class Agreement:
    """How often the replay decided as the recording did, per conversation."""

    conversations: int = 0
    same_group: int = 0
    same_agent: int = 0
    same_both: int = 0
    differences: list[tuple[str, tuple[str, str], tuple[str, str]]] = field(default_factory=list)

    def share(self, count: int) -> float:
        """count / conversations (1.0 when there are none)."""
        return count / self.conversations if self.conversations else 1.0


def agreement(
    order: Sequence[str], recorded: dict[str, tuple[str, str]], replayed: dict[str, tuple[str, str]]
) -> Agreement:
    """Compare the (group, agent) of every conversation in `order`; differences are listed in that order."""
    found = Agreement()
    for conv in order:
        before, after = recorded.get(conv, ("", "")), replayed.get(conv, ("", ""))
        found.conversations += 1
        found.same_group += before[0] == after[0]
        found.same_agent += before[1] == after[1]
        if before == after:
            found.same_both += 1
        else:
            found.differences.append((conv, before, after))
    return found


def _pct(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def service_level(found: Figures, target_s: float) -> float | None:
    """Share of conversations answered within the target (unanswered ones count as missed)."""
    total = len(found.waits_s) + found.unanswered
    return sum(1 for w in found.waits_s if w <= target_s) / total if total else None


def report(before: Figures, after: Figures, target_s: float, span_s: float, out: TextIO) -> None:
    """Print the figures, recorded vs replayed."""

    def row(name: str, a: str, b: str) -> None:
        out.write(f"{name:<28}{a:>14}{b:>14}\n")

    def level(f: Figures) -> str:
        value = service_level(f, target_s)
        return "-" if value is None else f"{value:.1%}"

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


def report_agreement(found: Agreement, shown: int, out: TextIO) -> None:
    """Print the per-conversation agreement and the first differences."""
    out.write(f"\nagreement with the recording ({found.conversations} conversations)\n")
    for name, count in (
        ("same group", found.same_group),
        ("same agent", found.same_agent),
        ("same group and agent", found.same_both),
    ):
        out.write(f"  {name:<26}{found.share(count):>14.1%}\n")
    if found.differences:
        out.write(
            f"first differences (conversation: recorded group/agent → replayed; {len(found.differences)} in all)\n"
        )
        for conv, (g0, a0), (g1, a1) in found.differences[:shown]:
            out.write(f"  {conv}: {g0 or '-'}/{a0 or '-'} → {g1 or '-'}/{a1 or '-'}\n")


async def read_topics(settings: ServiceSettings, tenants: set[str], save: Path | None) -> Recording:
    """Read the inbound, routing, presence and command topics of the settings' cluster and topic prefix from the
    start to their current end."""
    from aiokafka import AIOKafkaConsumer

    from switchboard.contracts import TYPE_HEADER, decode
    from switchboard.runtime.kafka import kafka_client_options, start_client, stop_client
    from switchboard.runtime.topics import Topics

    topics = Topics(settings.topic_prefix)
    consumer = AIOKafkaConsumer(
        topics.inbound,
        topics.routing,
        topics.presence,
        topics.commands,
        **kafka_client_options(settings),
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await start_client(consumer, settings, "replay reader")
    recording = Recording()
    sink = save.open("w", encoding="utf-8") if save else None
    try:
        ends = await consumer.end_offsets(list(consumer.assignment()))
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            for records in (await consumer.getmany(timeout_ms=1000, max_records=5000)).values():
                for r in records:
                    headers = {k: v.decode() for k, v in r.headers}
                    message = decode(headers.get(TYPE_HEADER), r.value)
                    if getattr(message, "tenant_id", "") not in tenants:
                        continue
                    recording.add(message, r.timestamp)
                    if sink is not None:
                        line = {
                            "type": type(message).__name__,
                            "at": r.timestamp,
                            "record": json_format.MessageToDict(message),
                        }
                        sink.write(json.dumps(line, ensure_ascii=False) + "\n")
    finally:
        await stop_client(consumer, "replay reader")
        if sink is not None:
            sink.close()
    return recording


def load_configs(path: Path, tenants: Sequence[str] = ()) -> ConfigStore:
    """The routing configs to replay with: one file, or every `*.yaml` of a directory (as the router loads them);
    with `tenants`, only those."""
    if path.is_dir():
        store = ConfigStore(path)
        store.poll()
        if store.errors:
            raise SystemExit("\n".join(store.errors.values()))
    else:
        store = ConfigStore(path.parent)
        store.put(load_routing_file(path))
    if tenants:
        kept = ConfigStore(path)
        for tenant in tenants:
            config = store.get(tenant)
            if config is None:
                raise SystemExit(f"{path}: no routing config for tenant {tenant!r}")
            kept.put(config)
        store = kept
    return store


def tail_ms(configs: ConfigStore) -> int:
    """How long sweeps go on after the last recorded step: long enough for offers to time out and be re-offered
    and for time-based overflow rings to open."""
    longest = 30.0
    for tenant in configs.tenants():
        config = configs.get(tenant)
        assert config is not None
        for group in config.skill_groups:
            offers = config.offer_policy(group.name)
            longest = max(longest, 3 * (offers.timeout_s + offers.reoffer_after_s))
            longest = max([longest, *(2 * r.after_s for r in group.overflow if r.after_s is not None)])
    return int(longest * 1000)


async def replay(
    recording: Recording,
    configs: ConfigStore,
    *,
    redis_url: str | None,
    sweep_interval_s: float,
    snapshot_ttl_s: float = RouterSettings().snapshot_ttl_s,
    capacity_multiplier: float = 1.0,
) -> list[RoutingEvent]:
    """Run the recording through the router on a scratch Redis; return the replay's routing events."""
    async with scratch_redis(redis_url) as (redis, keys):
        run = Reenactment(
            redis,
            keys,
            configs,
            Behaviour.of(recording.events),
            sweep_interval_s=sweep_interval_s,
            snapshot_ttl_s=snapshot_ttl_s,
            capacity_multiplier=capacity_multiplier,
        )
        schedule(
            run,
            recording.inbound,
            recording.presence,
            recording.handled_at(),
            sweeps=recording.sweeps(),
            quiet=recording.quiet(),
        )
        return await run.run(tail_ms(configs))


def main(argv: list[str] | None = None) -> int:
    """Entry point: `python -m switchboard.router.replay` / `switchboard replay`."""
    parser = argparse.ArgumentParser(prog="switchboard replay", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("recording", nargs="?", type=Path, help="JSON lines of the recorded records")
    parser.add_argument("--config", type=Path, required=True, help="routing config file or directory to replay with")
    parser.add_argument("--tenant", action="append", default=[], help="replay only this tenant (repeatable)")
    parser.add_argument(
        "--from-topics",
        action="store_true",
        help="read the topics (KAFKA_BOOTSTRAP, SB_TOPIC_PREFIX, SB_KAFKA_* credentials)",
    )
    parser.add_argument("--save", type=Path, default=None, help="with --from-topics: write the recording here")
    parser.add_argument(
        "--capacity-multiplier", type=float, default=1.0, help="what-if: scale every agent's surge factor"
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("REDIS_URL"),
        help="scratch Redis (default: REDIS_URL, else a local redis-server)",
    )
    parser.add_argument("--sweep-interval", type=float, default=RouterSettings().sweep_interval_s, help="seconds")
    parser.add_argument(
        "--snapshot-ttl",
        type=float,
        default=RouterSettings().snapshot_ttl_s,
        help="the recorded router's SB_SNAPSHOT_TTL_S, seconds",
    )
    parser.add_argument("--differences", type=int, default=10, help="how many differing conversations to list")
    args = parser.parse_args(argv)
    configs = load_configs(args.config, args.tenant)
    tenants = set(configs.tenants())
    if args.from_topics:
        recording = asyncio.run(read_topics(ServiceSettings(), tenants, args.save))
    elif args.recording is not None:
        with args.recording.open(encoding="utf-8") as lines:
            recording = read_jsonl(lines, tenants)
    else:
        parser.error("give a recording file or --from-topics")
    if not recording.inbound:
        print(f"no inbound messages of {', '.join(sorted(tenants))} in the recording")
        return 1
    events = asyncio.run(
        replay(
            recording,
            configs,
            redis_url=args.redis_url,
            sweep_interval_s=args.sweep_interval,
            snapshot_ttl_s=args.snapshot_ttl,
            capacity_multiplier=args.capacity_multiplier,
        )
    )
    arrivals = recording.arrivals()
    first = configs.get(sorted(tenants)[0])
    target = first.queue.service_level_target_s if first is not None else 30.0
    report(figures(arrivals, recording.events), figures(arrivals, events), target, recording.span_s(), sys.stdout)
    found = agreement(list(arrivals), outcomes(recording.events), outcomes(events))
    report_agreement(found, args.differences, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
