"""The router's context: what every handler (inbound, commands, upkeep) shares, and no handler logic.

Redis and its scripts, the key formats, the tenants' configs, where decisions go, the clock; reading a snapshot of a
tenant's agents to plan on; turning a plan of the routing policy into a typed route for the scripts; publishing
what the scripts decided.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from redis.asyncio import Redis

from switchboard.contracts import OutboundMessage, RoutingEvent
from switchboard.router.contract import (
    AgentExpectation,
    ConversationExpectation,
    Decision,
    Route,
    RouteCandidate,
    decode_decisions,
)
from switchboard.router.events import routing_event
from switchboard.router.metrics import ROUTE_DECISIONS, Published, observe
from switchboard.router.reload import ConfigStore
from switchboard.router.scripts import SCRIPTS, KeySet, Scripts, context
from switchboard.router.snapshot import Snapshot, read_groups, text
from switchboard.routing.chain import AgentView, Plan, Verdict, offer_deadline_ms, plan
from switchboard.routing.commands import ConversationView
from switchboard.routing.config import TenantRouting
from switchboard.routing.scoring import stored_score
from switchboard.routing.skills import Requirement
from switchboard.runtime.logs import get_logger
from switchboard.runtime.lua import LuaScript
from switchboard.state.figures import ABANDONED, ANSWERED, read_service_levels, record_outcomes
from switchboard.state.figures import Outcome as FigureOutcome
from switchboard.state.history import Close, CustomerHistory
from switchboard.state.keys import Keys
from switchboard.state.marks import StateMarks

log = get_logger(__name__)

# A route plan offers the claim script this many candidates (each declares four keys). When all of them changed
# since the snapshot, the conversation is queued and its groups drained at once, which finds whoever has room.
CANDIDATES = 2
# A group's service level (state/figures.py, shared by every replica) is read again after this long; between
# reads, a batch's overflow triggers use the level read last.
LEVEL_TTL_MS = 1000


class EventSink(Protocol):
    """Where decisions go: the routing topic; and agents whose presence the router changed (set away)."""

    async def routing(self, events: Sequence[RoutingEvent]) -> None:
        """Publish routing events (keyed by conversation)."""

    async def agents_changed(self, tenant: str, agents: Sequence[str]) -> None:
        """Publish these agents' whole presence state (the presence store's publish)."""

    async def outbound(self, messages: Sequence[OutboundMessage]) -> None:
        """Publish the bot's answers to customers (the outbound topic, keyed by conversation)."""


@dataclass
class MemorySink:
    """An EventSink that keeps what it got (tests, replay, benchmark)."""

    events: list[RoutingEvent] = field(default_factory=list)
    away: list[tuple[str, str]] = field(default_factory=list)
    replies: list[OutboundMessage] = field(default_factory=list)

    async def outbound(self, messages: Sequence[OutboundMessage]) -> None:
        """Keep the bot's answers."""
        self.replies.extend(messages)

    async def routing(self, events: Sequence[RoutingEvent]) -> None:
        """Keep the events."""
        self.events.extend(events)

    async def agents_changed(self, tenant: str, agents: Sequence[str]) -> None:
        """Keep the agents."""
        self.away.extend((tenant, agent) for agent in agents)


@dataclass(frozen=True)
class Outcome:
    """A decision with the plan's account of it: verdicts of agents passed over, reasons, and what the deciding
    group asked of its agents (level ring, language) at the time."""

    decision: Decision
    verdicts: tuple[Verdict, ...] = ()
    reasons: tuple[str, ...] = ()
    need: Requirement | None = None


def expectation(agent: AgentView) -> AgentExpectation:
    """What a plan made on this view assumes of the agent."""
    return AgentExpectation(
        agent.presence_version, (agent.used.get("chat", 0), agent.used.get("email", 0), agent.used.get("phone", 0))
    )


async def read_conversation(ctx: RouterContext, tenant: str, conversation_id: str) -> ConversationView:
    """The conversation hash as the command rules see it."""
    fields = ConversationView.FIELDS
    values = await ctx.redis.hmget(ctx.keys.conversation(tenant, conversation_id), fields)
    return ConversationView.of(conversation_id, dict(zip(fields, (text(v) for v in values), strict=True)))


def conversation_expectation(conv: ConversationView) -> ConversationExpectation:
    """What a decision made on this view assumes of the conversation."""
    return ConversationExpectation(conv.state, conv.owner, conv.offer_agent, conv.epoch)


def annotate(
    decisions: Sequence[Decision],
    chosen: Plan | None,
    reasons: Sequence[str] = (),
    needs: Mapping[str, Requirement] | None = None,
) -> list[Outcome]:
    """Attach a plan's verdicts, reasons and requirement to the route decision among a script's decisions (a
    drain's requirements come per conversation in `needs`)."""
    out = []
    for d in decisions:
        if chosen is not None and d.type in ROUTE_DECISIONS and not d.overflow:
            changed = tuple(Verdict(a, d.group, "plan", "changed_since_plan") for a in d.changed)
            need = chosen.needs.get(d.group)
            out.append(Outcome(d, (*chosen.verdicts, *changed), (*reasons, *chosen.reasons), need))
        elif needs is not None and d.type in ROUTE_DECISIONS and d.conv in needs:
            out.append(Outcome(d, need=needs[d.conv]))
        else:
            out.append(Outcome(d))
    return out


def figure_outcome(d: Decision, now_ms: int) -> FigureOutcome | None:
    """What a decision counts in the service-level figures: an answer (an agent took the conversation directly or
    accepted its offer) or an abandonment; None for anything else. Each arrival counts once (state/figures.py)."""
    if not (d.conv and d.group and d.channel and d.enq):
        return None
    if d.type in ("assigned", "accepted"):
        kind = ANSWERED
    elif d.type == "abandoned":
        kind = ABANDONED
    else:
        return None
    return FigureOutcome(kind, d.conv, d.home or d.group, d.channel, int(d.enq), now_ms)


@dataclass
class RouterContext:
    """What the router's handlers share (one per router process; any number of processes may share a tenant)."""

    redis: Redis
    keys: Keys
    configs: ConfigStore
    sink: EventSink
    instance: str = "router"
    marker_ttl_s: int = 7 * 24 * 3600
    # A snapshot of a tenant's groups may serve the batches of this long (planned assignments are counted in it);
    # it only steers the plan: a claim applies only to agents still as the snapshot had them.
    snapshot_ttl_s: float = 0.0
    clock: Callable[[], int] = field(default=lambda: int(time.time() * 1000))
    scripts: Scripts = SCRIPTS
    # The router's state marks (service "router"; None: not checked, as in tests and the replay's scratch Redis)
    # and what rebuilds a tenant's state when its mark is missing (router/rebuild.py).
    marks: StateMarks | None = None
    rebuild: Callable[[str], Awaitable[None]] | None = None
    rebuilt: Callable[[str], Awaitable[None]] | None = None
    _snapshots: dict[str, tuple[int, TenantRouting, frozenset[str], Snapshot]] = field(default_factory=dict)
    _levels: dict[tuple[str, str], tuple[int, float | None]] = field(default_factory=dict)

    def ctx(self, config: TenantRouting, now_ms: int) -> str:
        """ARGV[1] of the scripts for a tenant (with its state mark, which every script then checks)."""
        mark = self.marks.key(config.tenant) if self.marks is not None else ""
        return context(self.keys, config, now_ms, self.instance, self.marker_ttl_s, mark)

    def key_set(self, config: TenantRouting) -> KeySet:
        """A new set of declared keys of the tenant, with the tenant-wide ones (and its state mark)."""
        keys = KeySet(self.keys, config.tenant).tenant_wide()
        if self.marks is not None:
            keys.add(self.marks.key(config.tenant))
        return keys

    async def ready(self, tenant: str) -> None:
        """Before anything of a tenant is handled: when Redis lost the router's state of it (its mark is missing),
        rebuild it first (one replica; the others get RebuildPending, a TransientError: their consumer pauses).
        The scripts check the mark again atomically, so a loss after this check is refused (StateLost), not
        written into."""
        if self.marks is None or self.rebuild is None:
            return
        if await self.marks.ensure(tenant, self.rebuild) and self.rebuilt is not None:
            await self.rebuilt(tenant)

    async def levels(self, config: TenantRouting, groups: set[str], now_ms: int) -> dict[str, float | None]:
        """The groups' service levels from the shared figures (each read at most once per LEVEL_TTL_MS)."""
        tenant = config.tenant
        old = {g for g in groups if now_ms - self._levels.get((tenant, g), (-LEVEL_TTL_MS, None))[0] >= LEVEL_TTL_MS}
        if old:
            target = config.queue.service_level_target_s
            found = await read_service_levels(self.redis, self.keys, tenant, old, target_s=target, now_ms=now_ms)
            if len(self._levels) > 65536:
                self._levels.clear()
            for g, figures in found.items():
                self._levels[(tenant, g)] = (now_ms, figures.level)
        return {g: self._levels[(tenant, g)][1] for g in groups}

    def forget_snapshots(self, tenant: str) -> None:
        """Drop the cached snapshot of a tenant (a claim found it stale)."""
        self._snapshots.pop(tenant, None)

    async def snapshot(self, config: TenantRouting, groups: set[str]) -> Snapshot:
        """Agents and queue lengths of the groups and their overflow rings.

        One snapshot per tenant is kept for `snapshot_ttl_s` and grows to every group asked for meanwhile: planned
        assignments are counted in its agents, and an agent of several groups must be the same object whichever
        group a batch plans for, or a plan would expect slots another batch's plan already took.
        """
        wanted = set(groups)
        for name in groups:
            wanted.update(ring.group for ring in config.group(name).overflow)
        cached = self._snapshots.get(config.tenant)
        # Aged by the router's own clock, so a replay on a virtual clock reuses snapshots exactly as the router did.
        now_ms = self.clock()
        fresh = cached is not None and cached[1] is config and now_ms - cached[0] < self.snapshot_ttl_s * 1000
        if cached is not None and fresh and wanted <= cached[2]:
            return cached[3]
        if cached is not None and fresh:
            wanted |= cached[2]
        snap = await read_groups(self.redis, self.keys, config.tenant, wanted)
        levels = await self.levels(config, set(snap.stats), now_ms)
        snap.stats = {g: replace(s, level=levels[g]) for g, s in snap.stats.items()}
        if self.snapshot_ttl_s > 0:
            if len(self._snapshots) > 4096:
                self._snapshots.clear()
            self._snapshots[config.tenant] = (now_ms, config, frozenset(wanted), snap)
        return snap

    async def reroute(
        self,
        config: TenantRouting,
        conv: ConversationView,
        now_ms: int,
        *,
        group: str = "",
        excluded: frozenset[str] = frozenset(),
    ) -> tuple[Route, Plan]:
        """The plan for a conversation routed again (timed out, declined, transferred, held by the bot): it keeps
        its priority and original arrival; `group` when it moves to another."""
        group = group or conv.group
        return self.route(
            config,
            await self.snapshot(config, {group}),
            group,
            conv.channel,
            priority=conv.priority,
            enqueued_ms=conv.enqueued_ms or now_ms,
            now_ms=now_ms,
            excluded=excluded,
            language=conv.lang,
        )

    def route(
        self,
        config: TenantRouting,
        snap: Snapshot,
        group: str,
        channel: str,
        *,
        priority: int,
        enqueued_ms: int,
        now_ms: int,
        sticky: str = "",
        returning: str = "",
        excluded: frozenset[str] = frozenset(),
        count: bool = False,
        language: str = "",
        arrived_ms: int = 0,
    ) -> tuple[Route, Plan]:
        """The policy's plan for one conversation over a snapshot, as a route for the scripts; its wait (for the
        groups' level rings and language relaxing) counts from `enqueued_ms`, its original arrival.

        With `count`, the first candidate's planned assignment is counted in the snapshot, so the next plan of the
        same batch sees the load (and expects it). `arrived_ms`: when the adapter received the opening message
        (it orders conversations enqueued at the same ms, `routing.scoring.stored_score`).
        """
        index = snap.index()
        chosen = plan(
            config,
            group,
            channel,
            index,
            sticky=sticky,
            returning=returning,
            excluded=excluded,
            stats=snap.stats,
            limit=CANDIDATES,
            language=language,
            waited_s=max(0.0, (now_ms - enqueued_ms) / 1000),
        )
        cands = tuple(
            RouteCandidate(c.agent_id, c.group, c.step, expectation(index.by_id[c.agent_id])) for c in chosen.candidates
        )
        if count and cands:
            index.take(cands[0].a, channel, now_ms)
        route = Route(
            cands=cands,
            groups=tuple(chosen.groups),
            score=stored_score(enqueued_ms, priority, config.queue.aging_s_per_point, arrived_ms),
            versions={g: snap.versions[g] for g in chosen.groups if g in snap.versions},
            deadline=offer_deadline_ms(config, group, now_ms),
        )
        return route, chosen

    async def apply(
        self,
        config: TenantRouting,
        script: LuaScript,
        keys: KeySet,
        request: str,
        now_ms: int,
        *,
        unsent: bool = False,
        chosen: Plan | None = None,
        reasons: Sequence[str] = (),
        needs: Mapping[str, Requirement] | None = None,
    ) -> list[Decision]:
        """Run one script with its declared keys, publish what it decided, and return the decisions.

        A script without processed marker (`unsent`) also keeps its decisions in the tenant's unsent set: they are
        taken out once published, and re-sent by a later sweep if this process dies first.
        """
        if unsent:
            keys.unsent()
        raw = await script(self.redis, keys.list(), [self.ctx(config, now_ms), request])
        found = decode_decisions(raw)
        if found:
            await self.publish(config, annotate(found, chosen, reasons, needs), now_ms)
            if unsent:
                await self.redis.zrem(self.keys.routing_unsent(config.tenant), raw)
        return found

    async def publish(self, config: TenantRouting, found: Sequence[Outcome], now_ms: int) -> None:
        """Turn decisions into RoutingEvents and publish them (and the presence of agents set away); each event
        names the tenant's surge profile in force (router/surge.py) it was decided under."""
        events, away = [], []
        surge_profile = self.configs.surge.name(config.tenant)
        for outcome in found:
            d = outcome.decision
            if d.type == "refused":
                log.info(
                    "command_refused",
                    tenant=config.tenant,
                    conv=d.conv,
                    agent=d.agent,
                    reason=d.reason,
                    command=d.command,
                )
            event = routing_event(
                config.tenant,
                d,
                now_ms=now_ms,
                instance=self.instance,
                aging_s_per_point=config.queue.aging_s_per_point,
                verdicts=outcome.verdicts,
                reasons=outcome.reasons,
                need=outcome.need,
                language=d.lang,
            )
            if event is not None:
                event.surge_profile = surge_profile
                events.append(event)
            if d.type == "timed_out" and d.away:
                away.append(d.agent)
        if events:
            await self.sink.routing(events)
        # Counted once the decisions are on the topic: a resend after a failed publish counts them then.
        observe(config, [Published(o.decision, o.reasons) for o in found], now_ms)
        # The customer's history (for the next agent's desk) is written where the CLOSED decision is published.
        closes = [
            Close(d.conv, d.channel, d.group, d.agent, d.wrap, d.epoch)
            for d in (o.decision for o in found)
            if d.type == "closed" and d.conv
        ]
        if closes:
            await CustomerHistory(self.redis, self.keys).record_closed(config.tenant, closes, now_ms)
        if away:
            await self.sink.agents_changed(config.tenant, away)
        counted = [o for o in (figure_outcome(o.decision, now_ms) for o in found) if o is not None]
        if counted:
            await record_outcomes(self.redis, self.keys, config.tenant, counted)
