"""The candidate chain: which agents may take a conversation, in which order, and why the others were passed over.

Pure functions over a snapshot of agents. The order is a plan: the router's claim script takes the first candidate
that is still as the snapshot had it (router/lua/lib.lua), so a stale snapshot can cost a re-plan but never a
breach of capacity. `refusal` is the one place capacity arithmetic lives.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from switchboard.routing.config import CHANNELS, Capacity, OverflowRing, SkillGroup, TenantRouting
from switchboard.routing.scoring import estimated_wait_s, service_level
from switchboard.routing.skills import (
    Requirement,
    level_in,
    parse_languages,
    parse_proficiency,
    requirement,
    skill_refusal,
)


@dataclass
class AgentView:
    """One agent as routing sees it: presence's fields and the router's load fields."""

    agent_id: str
    status: str = "offline"
    groups: frozenset[str] = frozenset()
    cap: dict[str, int] = field(default_factory=dict)
    multiplier: float = 1.0
    used: dict[str, int] = field(default_factory=dict)
    last_assigned_ms: int = 0
    status_since_ms: int = 0
    # Presence bumps it on every change of status, skills, capacity or multiplier: with `used`, what a plan made on
    # this view assumes of the agent (the claim scripts check both before applying the plan).
    presence_version: str = ""
    missed_offers: int = 0
    # Removed by an operator or a roster prune (presence): no agent any more, whatever the grace period.
    removed: bool = False
    # Level (1-5) per group where the roster or an operator gave one; others count as skills.DEFAULT_LEVEL.
    proficiency: dict[str, int] = field(default_factory=dict)
    # ISO 639-1 codes the agent speaks; none: the languages of the group it serves in.
    languages: frozenset[str] = frozenset()

    @classmethod
    def from_hash(cls, agent_id: str, fields: Mapping[bytes, bytes]) -> AgentView:
        """Build from the agent hash as HGETALL returns it."""

        def text(name: str) -> str:
            return fields.get(name.encode(), b"").decode()

        def number(name: str, default: float = 0) -> float:
            try:
                return float(text(name) or default)
            except ValueError:
                return default

        mult = number("multiplier", 1.0)
        return cls(
            agent_id=agent_id,
            status=text("status") or "offline",
            groups=frozenset(g for g in text("groups").split(",") if g),
            cap={ch: int(number(f"cap:{ch}")) for ch in CHANNELS},
            multiplier=mult if mult > 0 else 1.0,
            used={ch: int(number(f"used:{ch}")) for ch in CHANNELS},
            last_assigned_ms=int(number("last_assigned_ms")),
            status_since_ms=int(number("status_since_ms")),
            presence_version=text("presence_version"),
            missed_offers=int(number("missed_offers")),
            removed=text("removed") == "1",
            proficiency=parse_proficiency(text("proficiency")),
            languages=parse_languages(text("languages")),
        )

    def capacity(self, channel: str) -> int:
        """Effective slots of a channel: floor(cap * multiplier)."""
        return math.floor(self.cap.get(channel, 0) * self.multiplier)

    def load(self, channel: str) -> float:
        """used / capacity of a channel (1.0 when the agent has no slot of it)."""
        cap = self.capacity(channel)
        return self.used.get(channel, 0) / cap if cap > 0 else 1.0

    def skill_refusal(self, need: Requirement, group: SkillGroup) -> str | None:
        """Why the agent may not serve a conversation in `group` under `need` (level, language, channel), or None."""
        return skill_refusal(need, group, self.proficiency, self.languages)


def refusal(agent: AgentView, channel: str, capacity: Capacity) -> str | None:
    """Why the agent cannot take one more conversation of `channel` now, or None when it can."""
    if agent.status != "available":
        return agent.status if agent.status in ("offline", "away", "busy", "wrap_up") else "not_available"
    if agent.used.get(channel, 0) + 1 > agent.capacity(channel):
        return "at_capacity"
    if capacity.phone_blocks_other_work and channel != "phone" and agent.used.get("phone", 0) > 0:
        return "phone_call_blocks"
    if capacity.mode == "units":
        weights: dict[str, int] = {str(k): v for k, v in capacity.unit_weights.items()}
        in_use = sum(agent.used.get(ch, 0) * weights.get(ch, 1) for ch in CHANNELS)
        if in_use + weights.get(channel, 1) > math.floor(capacity.units_per_agent * agent.multiplier):
            return "units_exhausted"
    return None


@dataclass(frozen=True)
class Candidate:
    """An agent to try, the group it would serve in, and the chain step that proposed it."""

    agent_id: str
    group: str
    step: str


@dataclass(frozen=True)
class Verdict:
    """Why a candidate was taken or passed over (becomes a CandidateVerdict)."""

    agent_id: str
    group: str
    step: str
    reason: str
    load: float = 0.0


@dataclass(frozen=True)
class GroupStats:
    """What the overflow triggers look at, per group."""

    queue_length: int = 0
    recent_waits_s: tuple[float, ...] = ()
    # The group's service level when already known (the router reads it from the shared figures,
    # state/figures.py); otherwise computed from recent_waits_s.
    level: float | None = None
    # Queue length per channel: a channel's estimated wait counts only its own queue.
    channel_lengths: Mapping[str, int] = field(default_factory=dict)

    def length(self, channel: str) -> int:
        """Conversations waiting on a channel (all channels when not known per channel)."""
        return self.channel_lengths.get(channel, 0) if self.channel_lengths else self.queue_length


@dataclass
class Plan:
    """The ordered candidates for one conversation, the verdicts of those passed over, and the groups it may use;
    `needs`: what each group walked asked of its agents (the decision's routing event names the one it took)."""

    candidates: list[Candidate] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    passed_over: int = 0
    needs: dict[str, Requirement] = field(default_factory=dict)


# A heap of a group's agents for one channel and one requirement: (group, channel, min level, language, weight).
HeapKey = tuple[str, str, int, str, float]
HeapEntry = tuple[tuple[float, int, str], int, AgentView]


@dataclass
class AgentIndex:
    """A snapshot's agents by id and by group, with the groups' slots per channel (what a batch plans over)."""

    by_id: dict[str, AgentView]
    by_group: dict[str, list[AgentView]]
    _slots: dict[tuple[str, str], int] = field(default_factory=dict)
    # Per (group, channel, requirement): a heap of (load key, version, agent) over the agents whose level and
    # languages meet the requirement, built on first use; an agent's version grows with every planned assignment,
    # which pushes a fresh entry and leaves the old one stale. So a batch of plans for one group costs
    # O(limit · log agents) each instead of a pass over every agent, whatever the levels and languages: an agent
    # below a ring or without the language is never in the heap it would be popped from and put back into.
    _heaps: dict[HeapKey, list[HeapEntry]] = field(default_factory=dict)
    _variants: dict[tuple[str, str], list[tuple[HeapKey, Requirement, SkillGroup]]] = field(default_factory=dict)
    _versions: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, agents: Iterable[AgentView]) -> AgentIndex:
        """Index a list of agents."""
        by_id = {a.agent_id: a for a in agents}
        by_group: dict[str, list[AgentView]] = {}
        for agent in by_id.values():
            for group in agent.groups:
                by_group.setdefault(group, []).append(agent)
        return cls(by_id, by_group)

    def ranked(self, group: SkillGroup, channel: str, need: Requirement, weight: float = 0.0) -> list[HeapEntry]:
        """The heap of the group's agents who meet `need`, by load on a channel less proficiency × `weight`
        (see `_heaps` and `load_key`)."""
        key: HeapKey = (group.name, channel, need.min_level, need.language, weight)
        if key not in self._heaps:
            order = load_key(channel, group.name, weight)
            members = [a for a in self.by_group.get(group.name, []) if a.skill_refusal(need, group) is None]
            heap = [(order(a), self._versions.get(a.agent_id, 0), a) for a in members]
            heapq.heapify(heap)
            self._heaps[key] = heap
            self._variants.setdefault((group.name, channel), []).append((key, need, group))
        return self._heaps[key]

    def version(self, agent_id: str) -> int:
        """How many planned assignments the agent got in this snapshot."""
        return self._versions.get(agent_id, 0)

    def take(self, agent_id: str, channel: str, now_ms: int) -> None:
        """Count a planned assignment, so the next plan of the same batch sees the load."""
        agent = self.by_id[agent_id]
        take(agent, channel, now_ms)
        version = self._versions[agent_id] = self._versions.get(agent_id, 0) + 1
        for name in agent.groups:
            for key, need, group in self._variants.get((name, channel), []):
                if agent.skill_refusal(need, group) is None:
                    heapq.heappush(self._heaps[key], (load_key(channel, name, key[4])(agent), version, agent))

    def slots(self, group: str, channel: str) -> int:
        """Effective slots of a channel over the group's available agents (taking work does not change it)."""
        key = (group, channel)
        if key not in self._slots:
            members = self.by_group.get(group, [])
            self._slots[key] = sum(a.capacity(channel) for a in members if a.status == "available")
        return self._slots[key]


def active_rings(
    config: TenantRouting, group: SkillGroup, stats: Mapping[str, GroupStats], index: AgentIndex, channel: str
) -> list[tuple[OverflowRing, str]]:
    """Overflow rings whose wait or service-level trigger fires at decision time, with the reason."""
    if not group.overflow:
        return []
    mine = stats.get(group.name, GroupStats())
    wait = estimated_wait_s(mine.length(channel), index.slots(group.name, channel), group.avg_handle_s)
    level = mine.level
    if level is None:
        level = service_level(mine.recent_waits_s, config.queue.service_level_target_s)
    fired = []
    for ring in _rings_taking(config, group, channel):
        if ring.estimated_wait_over_s is not None and wait > ring.estimated_wait_over_s:
            fired.append((ring, f"overflow:{ring.group}:estimated_wait={wait:.0f}s"))
        elif ring.service_level_below is not None and level is not None and level < ring.service_level_below:
            fired.append((ring, f"overflow:{ring.group}:service_level={level:.2f}"))
    return fired


def rings_due(
    config: TenantRouting,
    group: SkillGroup,
    stats: Mapping[str, GroupStats],
    index: AgentIndex,
    channel: str,
    *,
    waited_s: float,
    ahead: int,
) -> list[tuple[OverflowRing, str]]:
    """Overflow rings a conversation of `group` queued on `channel` belongs in now, with the reason: what
    re-evaluating a queued conversation checks, for every trigger.

    Its estimated wait is that of its place in the queue (`ahead` of it), as its plan saw it when it was queued
    behind as many, so only a longer wait fires a ring the plan did not; the service level is the group's; `after_s`
    is against its own wait (`waited_s`)."""
    mine = replace(stats.get(group.name, GroupStats()), queue_length=ahead, channel_lengths={channel: ahead})
    due = active_rings(config, group, {**stats, group.name: mine}, index, channel)
    fired = {ring.group for ring, _ in due}
    for ring in _rings_taking(config, group, channel):
        if ring.group not in fired and ring.after_s is not None and waited_s >= ring.after_s:
            due.append((ring, f"overflow:{ring.group}:waited={waited_s:.0f}s"))
            fired.add(ring.group)
    return due


def _rings_taking(config: TenantRouting, group: SkillGroup, channel: str) -> list[OverflowRing]:
    """The group's overflow rings to groups that take the channel: a ring to a chat-only group never fires for a
    phone call."""
    return [ring for ring in group.overflow if config.group(ring.group).takes(channel)]


def load_key(channel: str, group: str = "", weight: float = 0.0) -> Callable[[AgentView], tuple[float, int, str]]:
    """The least-loaded order in `group`: load on the channel less `weight` × (level − 1) / 4, so with a weight a
    more proficient agent goes first among agents of comparable load (0: pure least-loaded); ties go to the one
    idle longest (earliest last assignment), then the agent id."""

    def key(a: AgentView) -> tuple[float, int, str]:
        cap = math.floor(a.cap.get(channel, 0) * a.multiplier)
        load = a.used.get(channel, 0) / cap if cap > 0 else 1.0
        if weight:
            load -= weight * (level_in(a.proficiency, group) - 1) / 4
        return (load, a.last_assigned_ms, a.agent_id)

    return key


def least_loaded(members: Iterable[AgentView], channel: str, group: str = "", weight: float = 0.0) -> list[AgentView]:
    """Agents in the least-loaded order of `group` (see `load_key`)."""
    return sorted(members, key=load_key(channel, group, weight))


# A plan keeps at most this many verdicts of passed-over agents (and counts the rest).
MAX_VERDICTS = 20


class _Walk:
    """One walk of the chain: candidates in order, verdicts of those passed over."""

    def __init__(
        self,
        config: TenantRouting,
        channel: str,
        excluded: frozenset[str],
        limit: int,
        language: str = "",
        waited_s: float = 0.0,
    ) -> None:
        self.config, self.channel, self.excluded, self.limit = config, channel, excluded, limit
        self.language, self.waited_s = language, waited_s
        self.result = Plan()
        self.seen: set[str] = set()

    def full(self) -> bool:
        return len(self.result.candidates) >= self.limit

    def need(self, group: str) -> Requirement:
        """What the group asks of its agents for this conversation now (kept in the plan)."""
        found = self.result.needs.get(group)
        if found is None:
            found = requirement(self.config, self.config.group(group), self.channel, self.language, self.waited_s)
            self.result.needs[group] = found
        return found

    def why_not(self, agent: AgentView, group: str) -> str | None:
        why = refusal(agent, self.channel, self.config.capacity)
        if why is None and group not in agent.groups:
            why = "not_in_skill"
        if why is None:
            why = agent.skill_refusal(self.need(group), self.config.group(group))
        if why is None and agent.agent_id in self.excluded:
            why = "declined_or_missed"
        return why

    def pass_over(self, agent_id: str, group: str, step: str, why: str, load: float = 0.0) -> None:
        self.result.passed_over += 1
        if len(self.result.verdicts) < MAX_VERDICTS:
            self.result.verdicts.append(Verdict(agent_id, group, step, why, load))

    def one(self, agent: AgentView | None, agent_id: str, group: str, step: str) -> None:
        if agent_id in self.seen or self.full():
            return
        self.seen.add(agent_id)
        if agent is None:
            self.pass_over(agent_id, group, step, "unknown_agent")
            return
        why = self.why_not(agent, group)
        if why is None:
            self.result.candidates.append(Candidate(agent_id, group, step))
        else:
            self.pass_over(agent_id, group, step, why, agent.load(self.channel))

    def from_heap(self, index: AgentIndex, group: str, step: str) -> None:
        """Take the least-loaded fitting agents off the group's heap; put back what may fit again."""
        need = self.need(group)
        if not need.channel_ok:
            return  # the group does not take the channel: `explain` names it if nobody else fits
        heap = index.ranked(self.config.group(group), self.channel, need, self.config.skills.proficiency_weight)
        keep = []
        while heap and not self.full():
            entry = heapq.heappop(heap)
            agent = entry[2]
            if entry[1] != index.version(agent.agent_id):
                continue  # a newer entry of this agent is in the heap
            if agent.agent_id in self.seen:
                keep.append(entry)
                continue
            self.seen.add(agent.agent_id)
            why = self.why_not(agent, group)
            if why is None:
                self.result.candidates.append(Candidate(agent.agent_id, group, step))
                keep.append(entry)
            else:
                self.pass_over(agent.agent_id, group, step, why, agent.load(self.channel))
                if why == "declined_or_missed":
                    keep.append(entry)  # refused for this conversation only
                # Anything else only gets worse while a batch plans more work: it leaves the heap for the batch.
        for entry in keep:
            heapq.heappush(heap, entry)

    def explain(self, index: AgentIndex, groups: Sequence[str], primary: str) -> None:
        """Nobody fits: say why agents of the groups were passed over (the first MAX_VERDICTS, and how many)."""
        self.seen.clear()
        self.result.verdicts.clear()
        self.result.passed_over = 0
        for name in groups:
            step = "least_loaded" if name == primary else f"overflow:{name}"
            for agent in index.by_group.get(name, []):
                if agent.agent_id in self.seen:
                    continue
                self.seen.add(agent.agent_id)
                if len(self.result.verdicts) >= MAX_VERDICTS:
                    self.result.passed_over += 1
                    continue
                why = self.why_not(agent, name) or "changed_in_batch"
                self.pass_over(agent.agent_id, name, step, why, agent.load(self.channel))


def plan(
    config: TenantRouting,
    group_name: str,
    channel: str,
    agents: Sequence[AgentView] | AgentIndex,
    *,
    sticky: str = "",
    returning: str = "",
    excluded: frozenset[str] = frozenset(),
    stats: Mapping[str, GroupStats] | None = None,
    limit: int = 4,
    language: str = "",
    waited_s: float = 0.0,
) -> Plan:
    """Walk the group's chain over the snapshot and return up to `limit` candidates that fit, in order.

    A candidate fits when it has room, serves the group, meets what the group asks for a conversation in
    `language` that has waited `waited_s` (level ring, language, channel: routing/skills.py) and was not passed
    over for it. The claim script tries them in order and, if none still fits, re-checks the group's other agents
    before queueing; so a short list costs nothing in correctness and keeps each decision small.
    """
    index = agents if isinstance(agents, AgentIndex) else AgentIndex.of(agents)
    group = config.group(group_name)
    walk = _Walk(config, channel, excluded, limit, language, waited_s)
    walk.result.groups.append(group_name)
    walk.need(group_name)
    for step in group.chain:
        if step == "sticky" and sticky:
            walk.one(index.by_id.get(sticky), sticky, group_name, "sticky")
        elif step == "returning" and returning and config.affinity.enabled:
            walk.one(index.by_id.get(returning), returning, group_name, "returning")
        elif step == "least_loaded" and not walk.full():
            walk.from_heap(index, group_name, "least_loaded")
        elif step == "overflow":
            for ring, reason in active_rings(config, group, stats or {}, index, channel):
                walk.result.groups.append(ring.group)
                walk.result.reasons.append(reason)
                if not walk.full():
                    walk.from_heap(index, ring.group, f"overflow:{ring.group}")
    if not walk.result.candidates:
        walk.explain(index, walk.result.groups, group_name)
    return walk.result


def take(agent: AgentView, channel: str, now_ms: int) -> None:
    """Count a planned assignment in the snapshot, so the next plan of the same batch sees the load."""
    agent.used[channel] = agent.used.get(channel, 0) + 1
    agent.last_assigned_ms = now_ms


def offer_deadline_ms(config: TenantRouting, group: str, now_ms: int) -> int:
    """When an offer of a conversation of `group` made now times out, or 0 when the group assigns directly."""
    policy = config.offer_policy(group)
    return now_ms + int(policy.timeout_s * 1000) if policy.mode == "offer" else 0


def sets_away(config: TenantRouting, group: str, agent: AgentView) -> bool:
    """Whether one more missed offer of `group` sets the agent away (N misses in a row)."""
    return agent.status == "available" and agent.missed_offers + 1 >= config.offer_policy(group).max_misses
