"""What every actor saw during one row, and the invariants checked over it.

- Customers: every message a channel acknowledged (the load generator's ledger).
- Desktops: every event each agent applied, with its seq, epoch and the message's tag (`desk_event`).
- Redis, as the router and presence keep it: each agent's load and capacity per channel, sampled (`CapacitySampler`).
- The harness: each injection, when it began and when the fault was healed.

`judge()` turns that into a `FaultRow`: acked, lost (acknowledged and never on a desk, including those still queued
when the row's drain ended), duplicated (twice on one desk under one epoch), double-owned (one conversation given to
two agents under one epoch), over-capacity (samples of an agent over their capacity), reordered (a message on its
owner's desk before an earlier one of its conversation), and the recovery time of the worst injection.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import statistics
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from switchboard.routing.config import CHANNELS
from switchboard.state.agent_model import presence_knows
from switchboard.state.keys import Keys
from switchboard_tools.faults.table import FaultRow
from switchboard_tools.loadgen.accounting import Accounting, Delivery
from switchboard_tools.loadgen.observations import Observations
from switchboard_tools.loadgen.probes import TAG
from switchboard_tools.loadgen.schedule import Schedule

# Events that put a customer message on the owner's desk.
DELIVERIES = ("assigned", "message", "transcript")
# How long a simulated agent set away by the system (e.g. the router after missed offers) takes to notice and make
# themselves available again.
BACK_FROM_AWAY_S = 2.0
# After a fault is healed, messages sent within this long are still counted as held up by it.
AFTER_HEAL_S = 2.0


@dataclass(frozen=True)
class DeskEvent:
    """One event a desktop applied."""

    at: float
    tenant_id: str
    agent_id: str
    event: str
    conversation_id: str
    epoch: int
    seq: int
    tag: str | None


@dataclass
class Injection:
    """One fault: when it began and when the harness healed it (restarted, resumed, reconnected)."""

    fault: str
    target: str
    at: float
    healed_at: float = 0.0


@dataclass
class History:
    """The record of one row."""

    events: list[DeskEvent] = field(default_factory=list)
    injections: list[Injection] = field(default_factory=list)
    over_capacity: list[str] = field(default_factory=list)
    capacity_samples: int = 0
    # Samples of agents presence had not written back yet after Redis lost its data (nothing to compare).
    capacity_unknown: int = 0
    reconnects: int = 0
    # Tagged messages a desk first showed from a snapshot (a fresh start after Redis lost its outbox), not an event.
    snapshot_deliveries: int = 0
    set_away: int = 0
    notes: list[str] = field(default_factory=list)

    def desk_event(self, tenant_id: str, agent_id: str, frame: dict[str, Any], at: float) -> None:
        """Note an event a desktop applied."""
        message = frame.get("message") or {}
        match = TAG.search(str(message.get("text", "")))
        self.events.append(
            DeskEvent(
                at,
                tenant_id,
                agent_id,
                str(frame.get("event", "")),
                str(frame.get("conversation_id", "")),
                int(frame.get("epoch", 0)),
                int(frame.get("seq", 0)),
                match.group(1) if match else None,
            )
        )

    def inject(self, fault: str, target: str) -> Injection:
        """Note the start of an injection (now); set its `healed_at` when it is healed."""
        injection = Injection(fault, target, time.time())
        self.injections.append(injection)
        return injection


class CapacitySampler:
    """Samples every agent's load against capacity in Redis (the router's own counters) until stopped."""

    def __init__(self, redis: Redis, keys: Keys, agents: dict[str, list[str]], history: History) -> None:
        self.redis, self.keys, self.agents, self.history = redis, keys, agents, history

    async def run(self, interval_s: float = 0.5) -> None:
        """Sample every `interval_s`; a Redis that does not answer (a fault) is skipped."""
        while True:
            with contextlib.suppress(Exception):
                await self._sample()
            await asyncio.sleep(interval_s)

    async def _sample(self) -> None:
        for tenant, agents in self.agents.items():
            for agent in agents:
                fields = await self.redis.hgetall(self.keys.agent(tenant, agent))
                if not presence_knows(fields):
                    # Presence has not written the agent back yet (Redis lost its data): Redis holds no capacity
                    # to compare with, and the router gives no work to an agent presence has not written.
                    self.history.capacity_unknown += 1
                    continue
                self.history.capacity_samples += 1
                mult = float(fields.get(b"multiplier", b"1") or 1) or 1.0
                for ch in CHANNELS:
                    used = int(fields.get(f"used:{ch}".encode(), b"0") or 0)
                    cap = math.floor(int(fields.get(f"cap:{ch}".encode(), b"0") or 0) * mult)
                    if used > cap:
                        self.history.over_capacity.append(f"{time.time():.1f} {tenant}/{agent} {ch} {used}>{cap}")


def double_owned(events: list[DeskEvent]) -> list[str]:
    """Conversations that reached two agents' desks under one epoch."""
    owners: dict[tuple[str, int], set[str]] = defaultdict(set)
    for e in events:
        if e.event in DELIVERIES and e.conversation_id:
            owners[(e.conversation_id, e.epoch)].add(f"{e.tenant_id}/{e.agent_id}")
    return sorted({conv for (conv, _), agents in owners.items() if len(agents) > 1})


def reordered(events: list[DeskEvent], schedule: Schedule) -> list[str]:
    """Tags that reached their owner (under one epoch) after a later message of their conversation."""
    position: dict[str, int] = {}
    for conv in schedule.conversations:
        for i, tag in enumerate(conv.tags):
            position[tag] = i
    highest: dict[tuple[str, str, int], int] = {}
    seen: set[tuple[str, str, int, str]] = set()
    found = []
    for e in sorted(events, key=lambda e: (e.agent_id, e.seq, e.at)):
        if e.event not in DELIVERIES or e.tag is None or e.tag not in position:
            continue
        key = (e.agent_id, e.conversation_id, e.epoch)
        if (*key, e.tag) in seen:
            continue  # a duplicate, counted as such
        seen.add((*key, e.tag))
        if position[e.tag] < highest.get(key, -1):
            found.append(e.tag)
        highest[key] = max(highest.get(key, -1), position[e.tag])
    return sorted(found)


@dataclass(frozen=True)
class Held:
    """The message an injection held up longest: how long, and which."""

    injection: Injection
    wait_s: float
    tag: str


def recovery(history: History, accounting: Accounting, sent_at: dict[str, float]) -> list[Held]:
    """Per injection: the longest wait of a message it held up (sent before the heal, delivered after the fault
    began), from the later of its sending and the fault's start to its first delivery."""
    first = {tag: d.received_at for tag, d in accounting.first_delivery.items()}
    held: list[Held] = []
    for inj in history.injections:
        healed = inj.healed_at or inj.at
        waits = [
            (at - max(sent_at[tag], inj.at), tag)
            for tag, at in first.items()
            if at >= inj.at and sent_at.get(tag, math.inf) <= healed + AFTER_HEAL_S
        ]
        if waits:
            wait, tag = max(waits)
            held.append(Held(inj, wait, tag))
    return held


def _stages(obs: Observations, held: Held, delivery: Delivery) -> str:
    """Where a held message spent its wait: to the inbound topic, to the router's first decision, to the desk;
    and its conversation's routing events in that time (seconds from the later of its sending and the fault)."""
    start = max(obs.ledger.sent[held.tag].sent_at, held.injection.at)
    seen = obs.stages.get(held.tag)
    if seen is None:
        return f"{held.tag}: never seen on the inbound topic"
    parts = [f"inbound {seen.inbound_at - start:+.1f}"]
    if seen.decided_at is not None:
        parts.append(f"decided {seen.decided_at - start:+.1f}")
    parts.append(f"desk {delivery.received_at - start:+.1f} ({delivery.agent_id} {delivery.event})")
    events = [
        f"{e.type} {e.at - start:+.1f}{' ' + e.agent_id if e.agent_id else ''}"
        for e in obs.events
        if e.conversation_id == seen.conversation_id and start - 1.0 <= e.at <= delivery.received_at
    ]
    if events:
        parts.append("routing: " + ", ".join(events[:6]))
    return f"{held.tag} {' '.join(parts)}"


# Lost messages a row's note traces (conversation, last decision, the desk events of the conversation).
LOST_TRACED = 3
# Samples of an agent over capacity a row's note lists (the column counts them all).
OVER_CAPACITY_SHOWN = 8
# The recovery a row's note counts injections under (the router failover goal of docs/reliability.md).
QUICK_RECOVERY_S = 3.0


def judge(fault: str, history: History, obs: Observations, schedule: Schedule, extra_note: str = "") -> FaultRow:
    """The row of the table for what `history` and the load generator's observations show."""
    accounting = obs.ledger.settle(waiting=obs.queued_at_cut_off(), not_for_agents=obs.not_for_agents())
    sent_at = {tag: s.sent_at for tag, s in obs.ledger.sent.items()}
    lost = len(accounting.lost) + len(accounting.pending_at_cut_off)
    recovered = recovery(history, accounting, sent_at)
    waits = [h.wait_s for h in recovered]
    notes = []
    if accounting.pending_at_cut_off:
        notes.append(f"{len(accounting.pending_at_cut_off)} of the lost still queued when the drain ended")
    if lost:
        notes.append(f"the lost stopped at: {_stopped_at(obs, [*accounting.lost, *accounting.pending_at_cut_off])}")
        notes += [_traced(obs, history, tag) for tag in accounting.lost[:LOST_TRACED]]
    if accounting.unexpected:
        channel = {tag: conv.channel for conv in schedule.conversations for tag in conv.tags}
        by_channel = Counter(channel.get(tag, "an earlier row's") for tag in accounting.unexpected)
        kinds = ", ".join(f"{ch} {n}" for ch, n in sorted(by_channel.items()))
        notes.append(f"{len(accounting.unexpected)} delivered that no channel acknowledged ({kinds})")
    if waits:
        under = sum(1 for w in waits if w < QUICK_RECOVERY_S)
        notes.append(
            f"recovery median {statistics.median(waits):.1f} s, {under} of {len(waits)} under {QUICK_RECOVERY_S:.0f} s"
        )
        slow = [
            f"{h.injection.target} at {h.injection.at:.1f}: {h.wait_s:.1f} s"
            f" ({_stages(obs, h, accounting.first_delivery[h.tag])})"
            for h in recovered
            if h.wait_s >= QUICK_RECOVERY_S
        ]
        if slow and under:
            notes.append("over " + f"{QUICK_RECOVERY_S:.0f} s: " + ", ".join(slow[:5]))
    sampled = f"{len(history.events)} desk events, capacity sampled {history.capacity_samples}×"
    if history.capacity_unknown:
        sampled += f" ({history.capacity_unknown} more before presence wrote the agent back)"
    notes.append(sampled)
    if history.set_away:
        notes.append(f"agents set away by the system {history.set_away}× (back after {BACK_FROM_AWAY_S:.0f} s)")
    if history.reconnects:
        notes.append(f"{history.reconnects} desk reconnects")
    if history.snapshot_deliveries:
        notes.append(f"{history.snapshot_deliveries} messages reached their desk in a snapshot")
    if history.over_capacity:
        shown = history.over_capacity[:OVER_CAPACITY_SHOWN]
        more = len(history.over_capacity) - len(shown)
        notes.append(
            "over capacity (time tenant/agent channel used>cap): "
            + ", ".join(shown)
            + (f" and {more} more" if more else "")
        )
    notes += history.notes
    if extra_note:
        notes.append(extra_note)
    return FaultRow(
        fault=fault,
        injections=len(history.injections),
        acked=accounting.accepted,
        lost=lost,
        duplicated=len(accounting.duplicated),
        double_owned=len(double_owned(history.events)),
        over_capacity=len(history.over_capacity),
        reordered=len(reordered(history.events, schedule)),
        recovery_s=max(waits) if waits else None,
        note="; ".join(notes),
    )


def _traced(obs: Observations, history: History, tag: str) -> str:
    """A lost message's trail: where it went (its conversation's last routing decision) and every event of that
    conversation the desks applied (agent, event, epoch, seq, the message's tag)."""
    where = obs.whereabouts.get(tag, {})
    conv = str(where.get("conversation_id", ""))
    seen = [
        f"{e.agent_id} {e.event} e{e.epoch} s{e.seq}{' ' + e.tag if e.tag else ''}"
        for e in history.events
        if conv and e.conversation_id == conv
    ]
    return (
        f"lost {tag}: {where.get('message_id', '?')} of {conv or '?'} received {where.get('received_at', '?')}, "
        f"last decision {where.get('last_decision', '-')}; its desk events: {', '.join(seen[-12:]) or 'none'}"
    )


def _stopped_at(obs: Observations, tags: list[str]) -> str:
    """Where undelivered messages stopped, counted: not on the inbound topic, or their conversation's last routing
    decision (e.g. ROUTING_EVENT_QUEUED)."""
    places: Counter[str] = Counter()
    for tag in tags:
        where = obs.whereabouts.get(tag, {})
        if not where.get("on_inbound_topic"):
            places["not on the inbound topic"] += 1
        else:
            places[str(where.get("last_decision", "no routing decision")).split(" ", 1)[0]] += 1
    return ", ".join(f"{place} {n}" for place, n in places.most_common())
