"""The router's decisions over Redis: inbound messages and agent commands.

Per partition batch: read the conversations and the agents of the groups involved (one pipelined round trip
each), plan every new conversation with the pure chain over that snapshot (counting planned assignments so the
batch spreads load), then run the claim scripts in one pipeline, in record order. The scripts re-check
everything atomically; what they decided becomes RoutingEvents.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from prometheus_client import Counter, Histogram
from redis.asyncio import Redis

from switchboard.contracts import (
    AgentCommand,
    InboundMessage,
    MessageKind,
    RoutingEvent,
)
from switchboard.router.chain import Plan, plan
from switchboard.router.claims import Scripts, context, decisions
from switchboard.router.classify import Classification, Facts, classify
from switchboard.router.config import TenantRouting
from switchboard.router.events import CHANNEL_NAMES, routing_event, verdicts_json
from switchboard.router.reload import ConfigStore
from switchboard.router.scoring import service_level
from switchboard.router.snapshot import Snapshot, read_groups, redis_guard, text
from switchboard.runtime.logs import get_logger
from switchboard.state.history import CustomerHistory
from switchboard.state.keys import Keys

log = get_logger(__name__)

DECISIONS = Counter("sb_router_decisions_total", "Routing decisions by type", ["type"])
DECISION_SECONDS = Histogram(
    "sb_router_batch_decision_seconds",
    "Time to decide one batch of inbound records (Redis reads, plan, claim scripts)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
)
# Claims go to Redis in pipelines of this many, the next chunk planned while Redis runs the previous one.
CHUNK = 100


class EventSink(Protocol):
    """Where decisions go: the routing topic; and agents whose presence the router changed (set away)."""

    async def routing(self, events: Sequence[RoutingEvent]) -> None:
        """Publish routing events (keyed by conversation)."""

    async def agents_changed(self, tenant: str, agents: Sequence[str]) -> None:
        """Publish these agents' whole presence state (presence's PresenceStore.publish)."""


@dataclass
class MemorySink:
    """An EventSink that keeps what it got (tests, replay, benchmark)."""

    events: list[RoutingEvent] = field(default_factory=list)
    away: list[tuple[str, str]] = field(default_factory=list)

    async def routing(self, events: Sequence[RoutingEvent]) -> None:
        """Keep the events."""
        self.events.extend(events)

    async def agents_changed(self, tenant: str, agents: Sequence[str]) -> None:
        """Keep the agents."""
        self.away.extend((tenant, agent) for agent in agents)


def facts_of(message: InboundMessage) -> Facts:
    """What classification looks at in a message."""
    text_ = message.text
    if message.HasField("email") and message.email.subject:
        text_ = f"{message.email.subject}\n{text_}"
    return Facts(
        text=text_,
        channel=CHANNEL_NAMES.get(message.channel, "chat"),
        language=message.language,
        member_tier=message.customer.member_tier,
        order_status=message.commerce.order_status,
        dispute_stage=message.commerce.dispute_stage,
        platform=message.commerce.platform,
        category=message.commerce.category,
        sku=message.commerce.sku,
    )


def invalid_inbound(message: InboundMessage, configs: ConfigStore) -> str | None:
    """Why an inbound message cannot be routed (it goes to the DLQ), or None."""
    if not message.tenant_id:
        return "inbound message without tenant_id"
    if configs.get(message.tenant_id) is None:
        return f"no routing config for tenant {message.tenant_id!r}"
    if not message.conversation_id or not message.message_id:
        return "inbound message without conversation_id or message_id"
    if message.channel not in CHANNEL_NAMES:
        return f"inbound message with unknown channel {message.channel}"
    return None


def _is_live(message: InboundMessage) -> bool:
    # A partial ASR segment is a live update for the owner's desktop, never a stored message.
    return (
        message.kind == MessageKind.MESSAGE_KIND_TRANSCRIPT and message.HasField("phone") and not message.phone.is_final
    )


class Router:
    """Routing decisions of one router process; any number of processes may share a tenant."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        configs: ConfigStore,
        sink: EventSink,
        *,
        instance: str = "router",
        marker_ttl_s: int = 7 * 24 * 3600,
        snapshot_ttl_s: float = 0.0,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.configs = configs
        self.sink = sink
        self.instance = instance
        self.marker_ttl_s = marker_ttl_s
        # A snapshot of a tenant's groups may serve the batches of this long (planned assignments are counted in
        # it); it only steers the plan, the scripts re-check, so staleness costs a re-check, never a wrong claim.
        self.snapshot_ttl_s = snapshot_ttl_s
        self._snapshots: dict[tuple[str, frozenset[str]], tuple[float, TenantRouting, Snapshot]] = {}
        self.clock = clock or (lambda: int(time.time() * 1000))
        self.scripts = Scripts.register(redis)
        self._waits: dict[tuple[str, str], deque[float]] = defaultdict(lambda: deque(maxlen=200))

    # -- shared -----------------------------------------------------------------------------------------------

    def ctx(self, config: TenantRouting, now_ms: int) -> str:
        """ARGV[1] of the scripts for a tenant."""
        return context(self.keys, config, now_ms, self.instance)

    def waits(self, tenant: str) -> dict[str, tuple[float, ...]]:
        """Recent waits per group of a tenant (for service-level overflow triggers)."""
        return {g: tuple(w) for (t, g), w in self._waits.items() if t == tenant}

    async def snapshot(self, config: TenantRouting, groups: set[str]) -> Snapshot:
        """Agents and queue lengths of the groups and their overflow rings."""
        wanted = set(groups)
        for name in groups:
            wanted.update(ring.group for ring in config.group(name).overflow)
        key = (config.tenant, frozenset(wanted))
        cached = self._snapshots.get(key)
        if cached is not None and cached[1] is config and time.monotonic() - cached[0] < self.snapshot_ttl_s:
            return cached[2]
        snap = await read_groups(self.redis, self.keys, config.tenant, wanted, self.waits(config.tenant))
        target = config.queue.service_level_target_s
        snap.stats = {g: replace(s, level=service_level(s.recent_waits_s, target)) for g, s in snap.stats.items()}
        if self.snapshot_ttl_s > 0:
            if len(self._snapshots) > 256:
                self._snapshots.clear()
            self._snapshots[key] = (time.monotonic(), config, snap)
        return snap

    def plan_for(
        self,
        config: TenantRouting,
        snap: Snapshot,
        group: str,
        channel: str,
        *,
        sticky: str = "",
        returning: str = "",
        excluded: frozenset[str] = frozenset(),
    ) -> Plan:
        """The chain's plan for one conversation over a snapshot."""
        return plan(
            config,
            group,
            channel,
            snap.index(),
            sticky=sticky,
            returning=returning,
            excluded=excluded,
            stats=snap.stats,
        )

    async def publish(self, config: TenantRouting, found: Sequence[dict[str, Any]], now_ms: int) -> None:
        """Turn decisions into RoutingEvents and publish them (and the presence of agents set away)."""
        events, away = [], []
        for decision in found:
            kind = str(decision.get("type"))
            DECISIONS.labels(kind).inc()
            if kind in ("assigned", "offered") and decision.get("enq"):
                wait = max(0.0, (now_ms - float(decision["enq"])) / 1000)
                self._waits[(config.tenant, str(decision.get("group")))].append(wait)
            if kind == "refused":
                log.info(
                    "command_refused",
                    tenant=config.tenant,
                    conv=decision.get("conv"),
                    agent=decision.get("agent"),
                    reason=decision.get("reason"),
                    command=decision.get("command"),
                )
            event = routing_event(
                config.tenant,
                decision,
                now_ms=now_ms,
                instance=self.instance,
                aging_s_per_point=config.queue.aging_s_per_point,
            )
            if event is not None:
                events.append(event)
            if kind == "timed_out" and decision.get("away"):
                away.append(str(decision["agent"]))
        if events:
            await self.sink.routing(events)
        # The customer's history (for the next agent's desk) is written where the CLOSED decision is published.
        await CustomerHistory(self.redis, self.keys).record_closed(config.tenant, found, now_ms)
        if away:
            await self.sink.agents_changed(config.tenant, away)

    # -- inbound ----------------------------------------------------------------------------------------------

    async def handle_inbound(self, messages: Sequence[InboundMessage]) -> list[tuple[InboundMessage, str]]:
        """Route a batch of inbound messages in order; return those refused, with the reason."""
        started = time.perf_counter()
        refused: list[tuple[InboundMessage, str]] = []
        by_tenant: dict[str, list[InboundMessage]] = {}
        for message in messages:
            reason = invalid_inbound(message, self.configs)
            if reason is not None:
                refused.append((message, reason))
            else:
                by_tenant.setdefault(message.tenant_id, []).append(message)
        async with redis_guard():
            for tenant, items in by_tenant.items():
                config = self.configs.get(tenant)
                assert config is not None
                await self._inbound_tenant(config, items)
        DECISION_SECONDS.observe(time.perf_counter() - started)
        return refused

    async def _inbound_tenant(self, config: TenantRouting, items: Sequence[InboundMessage]) -> None:
        now = self.clock()
        pairs = [part for m in items for part in (m.conversation_id, m.customer.customer_id)]
        rows = [text(v) for v in await self.scripts.peek(args=[self.ctx(config, now), *pairs])]
        opened: set[str] = set()
        to_plan: list[int] = []
        for i, m in enumerate(items):
            state = rows[3 * i]
            if state not in ("assigned", "queued", "offered") and m.conversation_id not in opened and not _is_live(m):
                opened.add(m.conversation_id)
                to_plan.append(i)
        classes = {i: classify(config, facts_of(items[i])) for i in to_plan}
        snap = await self.snapshot(config, {c.group for c in classes.values()}) if classes else Snapshot()
        metas: list[dict[str, Any]] = []
        raws = await self._claim_in_chunks(config, items, rows, classes, snap, metas, now)
        results = [decisions(raw) for raw in raws]
        found: list[dict[str, Any]] = []
        for m, meta, result in zip(items, metas, results, strict=True):
            if result and result[0].get("type") == "need_plan":
                # The conversation closed between our read and the script: plan it now, alone.
                result = await self._replan(config, m)  # noqa: PLW2901
            reasons = meta.get("reasons") or []
            for decision in result:
                if reasons and decision.get("type") in ("assigned", "offered", "queued"):
                    decision["reasons"] = reasons
            found.extend(result)
        await self.publish(config, found, now)

    async def _claim_in_chunks(
        self,
        config: TenantRouting,
        items: Sequence[InboundMessage],
        rows: list[str],
        classes: dict[int, Classification],
        snap: Snapshot,
        metas: list[dict[str, Any]],
        now: int,
    ) -> list[Any]:
        """Plan and claim in chunks; Redis runs one chunk's scripts while the next is planned, still in order."""
        ctx = self.ctx(config, now)
        raws: list[Any] = []
        in_flight: asyncio.Task[list[Any]] | None = None
        try:
            for start in range(0, len(items), CHUNK):
                pipe = self.redis.pipeline(transaction=False)
                for i in range(start, min(start + CHUNK, len(items))):
                    m, meta = items[i], self._meta(items[i])
                    if i in classes:
                        sticky, returning = rows[3 * i + 1], rows[3 * i + 2]
                        self._add_plan(config, snap, meta, classes[i].group, sticky, returning, now)
                        meta.update(prio=classes[i].priority, rule=classes[i].rule)
                        meta.setdefault("reasons", []).extend(classes[i].boosts)
                    metas.append(meta)
                    await self.scripts.inbound(args=[ctx, json.dumps(meta), m.SerializeToString()], client=pipe)
                if in_flight is not None:
                    raws.extend(await in_flight)
                in_flight = asyncio.create_task(pipe.execute())
                await asyncio.sleep(0)  # let it write its commands before the next chunk's planning takes the CPU
            if in_flight is not None:
                raws.extend(await in_flight)
                in_flight = None
        finally:
            if in_flight is not None and not in_flight.done():
                in_flight.cancel()
        return raws

    def _meta(self, m: InboundMessage) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "mid": m.message_id,
            "conv": m.conversation_id,
            "ch": CHANNEL_NAMES[m.channel],
            "cust": m.customer.customer_id,
            "ttl": self.marker_ttl_s,
        }
        if _is_live(m):
            # Only present when true: JSON null decodes to a truthy value in Redis's Lua.
            meta["live"] = True
        return meta

    def _add_plan(
        self,
        config: TenantRouting,
        snap: Snapshot,
        meta: dict[str, Any],
        group: str,
        sticky: str,
        returning: str,
        now: int,
    ) -> None:
        channel = meta["ch"]
        chosen = self.plan_for(config, snap, group, channel, sticky=sticky, returning=returning)
        if chosen.candidates:
            snap.index().take(chosen.candidates[0].agent_id, channel, now)
        meta.update(
            group=group,
            cands=[{"a": c.agent_id, "g": c.group, "s": c.step} for c in chosen.candidates],
            groups=chosen.groups,
            verdicts=verdicts_json(chosen.verdicts),
            ver={g: snap.versions[g] for g in chosen.groups if g in snap.versions},
        )
        meta.setdefault("reasons", []).extend(chosen.reasons)
        if chosen.passed_over > len(chosen.verdicts):
            meta["reasons"].append(f"passed_over:{chosen.passed_over}")

    async def _replan(self, config: TenantRouting, m: InboundMessage) -> list[dict[str, Any]]:
        for _ in range(5):
            now = self.clock()
            found = classify(config, facts_of(m))
            snap = await self.snapshot(config, {found.group})
            last = await self.redis.hget(self.keys.conversation(config.tenant, m.conversation_id), "last_owner")
            meta = self._meta(m)
            self._add_plan(config, snap, meta, found.group, text(last), "", now)
            meta.update(prio=found.priority, rule=found.rule)
            raw = await self.scripts.inbound(args=[self.ctx(config, now), json.dumps(meta), m.SerializeToString()])
            result = decisions(raw)
            if not (result and result[0].get("type") == "need_plan"):
                return result
        raise RuntimeError(f"conversation {m.conversation_id} kept changing while being planned")

    # -- commands ---------------------------------------------------------------------------------------------

    async def handle_commands(self, commands: Sequence[AgentCommand]) -> list[tuple[AgentCommand, str]]:
        """Apply agents' commands in order; return those refused as bad input, with the reason."""
        from switchboard.router.commands import apply_command

        refused: list[tuple[AgentCommand, str]] = []
        async with redis_guard():
            for command in commands:
                reason = await apply_command(self, command)
                if reason is not None:
                    refused.append((command, reason))
        return refused
