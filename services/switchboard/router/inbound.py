"""Inbound customer messages: classify a new conversation, plan its route over a snapshot, claim it atomically.

Per batch of one tenant: read the conversations (one pipelined round trip) and the agents of the groups involved
(one more), plan every new conversation with the routing policy over that snapshot (counting planned assignments
so the batch spreads load), then run the inbound scripts in pipelines, in record order. A script applies a plan
only to agents still as planned; what it decided becomes RoutingEvents.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from prometheus_client import Histogram

from switchboard.contracts import InboundMessage, MessageKind
from switchboard.router.abandon import Abandonment, is_call_ended
from switchboard.router.bot import BotAnswers
from switchboard.router.context import Outcome, RouterContext, annotate
from switchboard.router.contract import (
    BOT_STATES,
    BotHold,
    Decision,
    InboundRequest,
    OpenConversation,
    Peek,
    decode_decisions,
)
from switchboard.router.drain import drain_groups
from switchboard.router.events import CHANNEL_NAMES
from switchboard.router.metrics import PLANS_NOT_APPLIED
from switchboard.router.reload import ConfigStore
from switchboard.router.scripts import KeySet
from switchboard.router.snapshot import Snapshot, redis_guard
from switchboard.routing.chain import Plan
from switchboard.routing.classify import Classification, Facts, classify
from switchboard.routing.config import TenantRouting
from switchboard.runtime.lua import ScriptCall, run_pipelined

DECISION_SECONDS = Histogram(
    "sb_router_batch_decision_seconds",
    "Time to decide one batch of inbound records (Redis reads, plan, claim scripts)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
)
# Claims go to Redis in pipelines of this many, the next chunk planned while Redis runs the previous one.
CHUNK = 100
# A message whose conversation changed between the read and the script is read and tried again this often.
RETRIES = 5
# Why a conversation whose customer left while it waited is routed again, with its original arrival.
RETURNED = ("returned_after_abandoning",)


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


def is_live(message: InboundMessage) -> bool:
    """A partial ASR segment: a live update for the owner's desktop, never a stored message."""
    return (
        message.kind == MessageKind.MESSAGE_KIND_TRANSCRIPT and message.HasField("phone") and not message.phone.is_final
    )


@dataclass(frozen=True)
class Opening:
    """How a conversation opens: its classification, and either a hold for the bot or (for one the bot held or
    answered) the original arrival it keeps (`since`, ms; 0 for a new arrival)."""

    classified: Classification
    hold: BotHold | None = None
    since: int = 0
    reasons: tuple[str, ...] = ()
    # The conversation's language: its opening message's (kept in the conversation hash as `lang`).
    language: str = ""


def received_ms(message: InboundMessage) -> int:
    """When the adapter received a message (ms; 0 when it did not say)."""
    return message.received_at.ToMilliseconds() if message.HasField("received_at") else 0


def continuing(config: TenantRouting, seen: Peek, now_ms: int) -> Opening | None:
    """A conversation the bot held or answered, routed now that the customer wrote again: its classification
    and original arrival (a message after the tenant's `bot.followup_s` is a new arrival). Likewise one whose
    customer left while it waited (abandoned) and writes again: it keeps its classification and arrival."""
    if seen.state not in (*BOT_STATES, "abandoned") or seen.group not in {g.name for g in config.skill_groups}:
        return None
    kept = Classification(seen.group, seen.prio, seen.rule, by=seen.by, confidence=seen.conf)
    if seen.state == "abandoned":
        return Opening(kept, since=seen.enq, reasons=RETURNED, language=seen.lang)
    since = seen.enq if now_ms - (seen.answered or seen.enq) <= config.bot.followup_s * 1000 else 0
    return Opening(kept, since=since, reasons=("bot:customer_wrote",), language=seen.lang)


@dataclass
class Call:
    """One message's script call: its request, declared keys and the plan behind it."""

    message: InboundMessage
    request: InboundRequest
    keys: KeySet
    chosen: Plan | None = None
    reasons: tuple[str, ...] = ()


class InboundHandler:
    """Routes inbound messages of any tenant, in order."""

    def __init__(self, ctx: RouterContext, bot: BotAnswers | None = None) -> None:
        self.ctx = ctx
        self.bot = bot
        self.abandonment = Abandonment(ctx)

    async def _opening(self, config: TenantRouting, m: InboundMessage, seen: Peek, now: int) -> Opening:
        """Classify a conversation's opening message; the bot may hold it (see router/bot.py)."""
        found = continuing(config, seen, now)
        if found is not None:
            return found if found.language else replace(found, language=m.language)
        facts = facts_of(m)
        classified = classify(config, facts)
        if self.bot is None:
            return Opening(classified, language=m.language)
        enabled = self.bot.enabled(config)
        hold = self.bot.hold_for(config, m, facts, classified, enabled, now) if enabled else None
        return Opening(classified, hold, language=m.language)

    async def handle(self, messages: Sequence[InboundMessage]) -> list[tuple[InboundMessage, str]]:
        """Route a batch of inbound messages in order; return those refused, with the reason."""
        started = time.perf_counter()
        refused: list[tuple[InboundMessage, str]] = []
        by_tenant: dict[str, list[InboundMessage]] = {}
        for message in messages:
            reason = invalid_inbound(message, self.ctx.configs)
            if reason is not None:
                refused.append((message, reason))
            else:
                by_tenant.setdefault(message.tenant_id, []).append(message)
        async with redis_guard():
            for tenant, items in by_tenant.items():
                await self.ctx.ready(tenant)
                config = self.ctx.configs.get(tenant)
                assert config is not None
                await self._tenant(config, items)
        DECISION_SECONDS.observe(time.perf_counter() - started)
        return refused

    async def _read(self, config: TenantRouting, items: Sequence[InboundMessage]) -> list[Peek]:
        keys, tenant = self.ctx.keys, config.tenant
        declared: list[str] = []
        for m in items:
            conv = keys.conversation(tenant, m.conversation_id)
            customer = m.customer.customer_id
            declared += (conv, keys.returning_customer(tenant, customer) if customer else conv)
        return Peek.decode_all(await self.ctx.scripts.peek(self.ctx.redis, declared))

    async def _tenant(self, config: TenantRouting, batch: Sequence[InboundMessage]) -> None:
        # A call.ended is the last message of its call: handled after the rest of the batch, on its own path.
        items = [m for m in batch if not is_call_ended(m)]
        if items:
            await self._messages(config, items)
        for m in batch:
            if is_call_ended(m):
                await self._end_call(config, m)

    async def _end_call(self, config: TenantRouting, m: InboundMessage) -> None:
        """A caller hung up: a waiting call is abandoned, an assigned one's owner gets the message, nothing reopens."""
        for _ in range(RETRIES):
            if await self.abandonment.call_ended(config, m):
                return
            now = self.ctx.clock()
            call = self._call(config, m, (await self._read(config, [m]))[0], None, None, now)
            args = (self.ctx.ctx(config, now), call.request.encode(), m.SerializeToString())
            result = decode_decisions(await self.ctx.scripts.inbound(self.ctx.redis, call.keys.list(), args))
            if not (result and result[0].type in ("need_plan", "changed")):
                await self.ctx.publish(config, annotate(result, None), now)
                return
        raise RuntimeError(f"conversation {m.conversation_id} kept changing while its call ended")

    async def _messages(self, config: TenantRouting, items: Sequence[InboundMessage]) -> None:
        now = self.ctx.clock()
        seen = await self._read(config, items)
        opened: set[str] = set()
        to_plan: set[int] = set()
        for i, m in enumerate(items):
            opens = seen[i].state not in ("assigned", "queued", "offered") and m.conversation_id not in opened
            if opens and not is_live(m):
                opened.add(m.conversation_id)
                to_plan.add(i)
        classes = {i: await self._opening(config, items[i], seen[i], now) for i in sorted(to_plan)}
        groups = {o.classified.group for o in classes.values() if o.hold is None}
        snap = await self.ctx.snapshot(config, groups) if groups else Snapshot()
        calls: list[Call] = []
        raws = await self._claim_in_chunks(config, items, seen, classes, snap, calls, now)
        found: list[Outcome] = []
        stale: set[str] = set()
        for first, raw in zip(calls, raws, strict=True):
            result, call = decode_decisions(raw), first
            if result and result[0].type in ("need_plan", "changed"):
                # The conversation changed between our read and the script: read and plan it again, alone.
                PLANS_NOT_APPLIED.labels(config.tenant, "changed").inc()
                result, call = await self._again(config, first.message)
            found.extend(annotate(result, call.chosen, call.reasons))
            if any(d.stale for d in result):
                PLANS_NOT_APPLIED.labels(config.tenant, "stale").inc()
                stale.update(d.group for d in result if d.stale)
        if stale:
            self.ctx.forget_snapshots(config.tenant)
        await self.ctx.publish(config, found, now)
        if self.bot is not None:
            self.bot.start(config, items, [o.decision for o in found])
        if stale:
            await drain_groups(self.ctx, config, sorted(stale), now)

    def _call(
        self,
        config: TenantRouting,
        m: InboundMessage,
        seen: Peek,
        snap: Snapshot | None,
        opening: Opening | None,
        now: int,
    ) -> Call:
        """The request and declared keys of one message (with a route plan when it opens its conversation, or
        the bot's hold)."""
        channel = CHANNEL_NAMES[m.channel]
        customer = m.customer.customer_id
        ks = self.ctx.key_set(config).add(self.ctx.keys.processed(config.tenant, "router", m.message_id))
        ks.conversation(m.conversation_id, customer)
        if seen.owner:
            ks.agent(seen.owner)
        request = InboundRequest(m.message_id, m.conversation_id, channel, customer, seen.owner, is_live(m))
        if opening is None or snap is None:
            return Call(m, request, ks)
        request = replace(request, lang=opening.language)
        if opening.hold is not None:
            return Call(m, replace(request, bot=opening.hold), ks.bot_holds())
        classified = opening.classified
        group, priority, rule, boosts = classified.group, classified.priority, classified.rule, classified.boosts
        route, chosen = self.ctx.route(
            config,
            snap,
            group,
            channel,
            priority=priority,
            enqueued_ms=opening.since or now,
            now_ms=now,
            sticky=seen.last_owner,
            returning=seen.returning,
            count=True,
            language=opening.language,
            arrived_ms=0 if opening.since else received_ms(m),
        )
        ks.route(route, channel)
        if opening.since:
            ks.bot_holds()
        reasons = [*boosts, *opening.reasons]
        if chosen.passed_over > len(chosen.verdicts):
            reasons.append(f"passed_over:{chosen.passed_over}")
        opened = OpenConversation(group, priority, rule, route, opening.since, classified.by, classified.confidence)
        request = replace(request, open=opened)
        return Call(m, request, ks, chosen, tuple(reasons))

    async def _claim_in_chunks(
        self,
        config: TenantRouting,
        items: Sequence[InboundMessage],
        seen: Sequence[Peek],
        classes: dict[int, Opening],
        snap: Snapshot,
        calls: list[Call],
        now: int,
    ) -> list[bytes | str]:
        """Plan and claim in chunks; Redis runs one chunk's scripts while the next is planned, still in order."""
        ctx = self.ctx.ctx(config, now)
        raws: list[bytes | str] = []
        in_flight: asyncio.Task[list[Any]] | None = None
        try:
            for start in range(0, len(items), CHUNK):
                chunk: list[ScriptCall] = []
                for i in range(start, min(start + CHUNK, len(items))):
                    call = self._call(config, items[i], seen[i], snap, classes.get(i), now)
                    calls.append(call)
                    args = (ctx, call.request.encode(), items[i].SerializeToString())
                    chunk.append(ScriptCall(self.ctx.scripts.inbound, call.keys.list(), args))
                if in_flight is not None:
                    raws.extend(await in_flight)
                in_flight = asyncio.create_task(run_pipelined(self.ctx.redis, chunk))
                await asyncio.sleep(0)  # let it write its commands before the next chunk's planning takes the CPU
            if in_flight is not None:
                raws.extend(await in_flight)
                in_flight = None
        finally:
            if in_flight is not None and not in_flight.done():
                in_flight.cancel()
        return raws

    async def _again(self, config: TenantRouting, m: InboundMessage) -> tuple[list[Decision], Call]:
        for _ in range(RETRIES):
            now = self.ctx.clock()
            seen = (await self._read(config, [m]))[0]
            opening = None
            snap = None
            if seen.state not in ("assigned", "queued", "offered") and not is_live(m):
                opening = await self._opening(config, m, seen, now)
                snap = await self.ctx.snapshot(config, {opening.classified.group})
            call = self._call(config, m, seen, snap, opening, now)
            args = (self.ctx.ctx(config, now), call.request.encode(), m.SerializeToString())
            raw = await self.ctx.scripts.inbound(self.ctx.redis, call.keys.list(), args)
            result = decode_decisions(raw)
            if not (result and result[0].type in ("need_plan", "changed")):
                return result, call
        raise RuntimeError(f"conversation {m.conversation_id} kept changing while being planned")
