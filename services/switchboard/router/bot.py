"""Bot-first answers in the router: hold a new conversation, look its order up in the background, answer or route.

The inbound batch only decides (pure, `routing.bot`) and holds the conversation in the same script that would have
queued it (`state` = `bot`, its first message in the thread, a deadline in the tenant's bot holds); the lookup
runs in a task of its own, so a slow order system never delays the batch or any other conversation. Then:

- answer: the OutboundMessage (sender "bot") goes to the outbound topic first — its id is fixed by the held
  message, so a repeat reaches the customer once (the adapters' processed markers) — then `bot_answer.lua` puts
  the answer in the thread and records ANSWERED_BY_BOT. The conversation waits for the customer (`bot_answered`);
- routed after all (lookup failed, timed out, breaker open, no answer fits): `bot_route.lua` with a plan made
  with the conversation's original arrival time;
- the customer writes again (InboundHandler): routed with the original arrival time and thread;
- the router dies mid-lookup: the sweep (`sweep_holds`, every replica) routes holds whose deadline passed.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass

from switchboard.contracts import InboundMessage, MessageKind, OutboundMessage
from switchboard.router.bot_lookup import LookupResult, OrderLookup
from switchboard.router.context import Outcome, RouterContext, read_conversation
from switchboard.router.contract import BotAnswerRequest, BotHold, BotRouteRequest, Decision, decode_decisions
from switchboard.router.drain import drain_groups
from switchboard.router.snapshot import redis_guard, text
from switchboard.router.surge import ActiveProfile
from switchboard.routing.bot import Answer, bot_intent, fill, order_id_in
from switchboard.routing.classify import Classification, Facts
from switchboard.routing.config import BotIntent, TenantRouting
from switchboard.routing.surge import profile_errors
from switchboard.runtime.errors import TransientError
from switchboard.runtime.logs import get_logger
from switchboard.runtime.pii import mask_pii

log = get_logger(__name__)

# A hold's deadline is the lookup timeout plus this: the router that holds it routes it itself when the lookup
# times out; the sweep of any replica only takes holds whose router did not (it died).
HOLD_GRACE_MS = 1_000


@dataclass(frozen=True)
class HeldConversation:
    """A conversation the bot holds: what its answer task needs."""

    config: TenantRouting
    message: InboundMessage
    intent: BotIntent


class BotAnswers:
    """The bot of one router process: decides holds, runs lookups in tasks, answers or routes."""

    def __init__(self, ctx: RouterContext, lookup: OrderLookup, order_lookup_url: str = "") -> None:
        self.ctx = ctx
        self.lookup = lookup
        self.order_lookup_url = order_lookup_url
        self._enabled: dict[str, tuple[ActiveProfile, TenantRouting, frozenset[str]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def enabled(self, config: TenantRouting) -> frozenset[str]:
        """The bot intents the tenant's surge profile in force switches on (`bot_first`), as the router knows the
        profile (router/surge.py: read on every sweep); none without a profile, or with one that does not fit the
        tenant's config (the router then routes by the config alone)."""
        active = self.ctx.configs.surge.get(config.tenant)
        if not config.bot.intents or active.profile is None or not active.profile.bot_first:
            return frozenset()
        cached = self._enabled.get(config.tenant)
        if cached is not None and cached[0] is active and cached[1] is config:
            return cached[2]
        fits = not profile_errors(active.profile, config)
        found = frozenset(active.profile.bot_first) if fits else frozenset()
        self._enabled[config.tenant] = (active, config, found)
        return found

    def url_for(self, config: TenantRouting) -> str:
        """The tenant's order system: its config's, else the deployment's."""
        return config.bot.order_lookup_url or self.order_lookup_url

    def hold_for(
        self,
        config: TenantRouting,
        message: InboundMessage,
        facts: Facts,
        classified: Classification,
        enabled: frozenset[str],
        now_ms: int,
    ) -> BotHold | None:
        """A hold when the bot answers this first message: an intent switched on matches, and for an order
        intent there is an order system and an order id or a customer to look up."""
        intent = bot_intent(config, facts, enabled)
        if intent is None:
            return None
        if intent.lookup == "order":
            order_id = order_id_in(config.bot, message.commerce.order_id, message.text)
            if not self.url_for(config) or not (order_id or message.customer.customer_id):
                return None
        deadline = now_ms + int(config.bot.lookup_timeout_s * 1000) + HOLD_GRACE_MS
        return BotHold(
            intent.name,
            classified.group,
            classified.priority,
            classified.rule,
            deadline,
            classified.by,
            classified.confidence,
        )

    def start(self, config: TenantRouting, messages: Sequence[InboundMessage], found: Sequence[Decision]) -> None:
        """Start the answer task of every conversation the batch's scripts held for the bot."""
        # Each held conversation's intent: the rule of its first hold in the batch (one pass, not one per message).
        held: dict[str, str] = {}
        for d in found:
            if d.type == "bot_held":
                held.setdefault(d.conv, d.rule)
        for message in messages:
            # The first message of a held conversation starts its task (a later one of the batch finds it gone).
            rule = held.pop(message.conversation_id, None)
            intent = config.bot.intent(rule) if rule is not None else None
            if intent is not None:
                task = asyncio.create_task(self._answer(HeldConversation(config, message, intent)))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Stop answer tasks in flight (their holds are routed by a sweep once their deadline passed)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.lookup.close()

    async def idle(self) -> None:
        """Wait until no answer task is in flight (tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _answer(self, held: HeldConversation) -> None:
        config, message, intent = held.config, held.message, held.intent
        started = time.monotonic()
        result = await self._look_up(held)
        answer = fill(intent, message.language, result.order) if result.outcome == "found" else None
        try:
            async with redis_guard():
                if answer is None:
                    # Found but the template needs a field the order lacks: a person answers instead.
                    why = result.outcome if result.outcome != "found" else "incomplete_order"
                    await self.route_held(config, message.conversation_id, message.message_id, f"bot:{why}")
                else:
                    await self._send(held, answer, result)
        except TransientError as exc:
            # Redis or Kafka is away: the hold stays and the sweep routes it once its deadline passed.
            log.warning("bot_answer_paused", tenant=config.tenant, conv=message.conversation_id, error=repr(exc))
        log.info(
            "bot_answer",
            tenant=config.tenant,
            conv=message.conversation_id,
            intent=intent.name,
            outcome=result.outcome,
            answered=answer is not None,
            seconds=round(time.monotonic() - started, 3),
        )

    async def _look_up(self, held: HeldConversation) -> LookupResult:
        config, message, intent = held.config, held.message, held.intent
        if intent.lookup == "none":
            return LookupResult("found")
        result = await self.lookup.lookup(
            self.url_for(config),
            config.tenant,
            order_id=order_id_in(config.bot, message.commerce.order_id, message.text),
            customer_id=message.customer.customer_id,
            timeout_s=config.bot.lookup_timeout_s,
        )
        return result if result.outcome != "found" else LookupResult("found", result.order)

    async def _send(self, held: HeldConversation, answer: Answer, result: LookupResult) -> None:
        """The answer to the customer first (at least once, deduplicated by id), then into the thread."""
        config, message = held.config, held.message
        state, token = await self.ctx.redis.hmget(
            self.ctx.keys.conversation(config.tenant, message.conversation_id), ["state", "bot_token"]
        )
        if text(state) != "bot" or text(token) != message.message_id:
            log.info("bot_answer_late", tenant=config.tenant, conv=message.conversation_id, state=text(state))
            return
        reply = bot_reply(message, answer)
        await self.ctx.sink.outbound([reply])
        ks = self.ctx.key_set(config).conversation(message.conversation_id).bot_holds()
        lookup = json.dumps(dict(result.order), ensure_ascii=False, sort_keys=True)
        request = BotAnswerRequest(message.conversation_id, message.message_id, answer.template, lookup)
        thread_entry = thread_entry_of(reply, message, answer)
        now = self.ctx.clock()
        raw = await self.ctx.scripts.bot_answer(
            self.ctx.redis,
            ks.unsent().list(),
            [self.ctx.ctx(config, now), request.encode(), thread_entry.SerializeToString()],
        )
        await self._published(config, raw, now)

    async def _published(self, config: TenantRouting, raw: bytes | str, now: int) -> None:
        found = decode_decisions(raw)
        if any(d.type == "answered_by_bot" for d in found):
            await self.ctx.publish(config, [Outcome(d) for d in found], now)
            await self.ctx.redis.zrem(self.ctx.keys.routing_unsent(config.tenant), raw)
        else:
            log.info("bot_answer_late", tenant=config.tenant, conv=found[0].conv if found else "")

    async def route_held(self, config: TenantRouting, conv_id: str, token: str, reason: str) -> list[Decision]:
        """Route a conversation the bot holds under `token`, with its original arrival (nothing if it moved on)."""
        ctx, now = self.ctx, self.ctx.clock()
        conv = await read_conversation(ctx, config.tenant, conv_id)
        if conv.state != "bot" or conv.group not in {g.name for g in config.skill_groups}:
            await ctx.redis.zrem(ctx.keys.bot_holds(config.tenant), conv_id)
            return []
        route, chosen = await ctx.reroute(config, conv, now)
        ks = ctx.key_set(config).conversation(conv_id, conv.customer_id).bot_holds().route(route, conv.channel)
        request = BotRouteRequest(conv_id, token, route)
        found = await ctx.apply(
            config, ctx.scripts.bot_route, ks, request.encode(), now, unsent=True, chosen=chosen, reasons=(reason,)
        )
        stale = sorted({d.group for d in found if d.stale})
        if stale:
            ctx.forget_snapshots(config.tenant)
            await drain_groups(ctx, config, stale, now)
        return found

    async def sweep_holds(self, config: TenantRouting, now: int) -> int:
        """Route the holds whose deadline passed (their router died mid-lookup, or its task was cut off)."""
        key = self.ctx.keys.bot_holds(config.tenant)
        due = await self.ctx.redis.zrangebyscore(key, "-inf", now, start=0, num=200)
        for raw in due:
            conv = text(raw)
            token = text(await self.ctx.redis.hget(self.ctx.keys.conversation(config.tenant, conv), "bot_token"))
            await self.route_held(config, conv, token, "bot:deadline_passed")
        return len(due)


def bot_reply(message: InboundMessage, answer: Answer) -> OutboundMessage:
    """The bot's answer on the customer's channel; its id is fixed by the message it answers. PII-masked like an
    agent's reply (an order lookup may answer with the delivery's phone number)."""
    reply = OutboundMessage(
        message_id=f"bot-{message.message_id}",
        tenant_id=message.tenant_id,
        conversation_id=message.conversation_id,
        channel=message.channel,
        kind=MessageKind.MESSAGE_KIND_TEXT,
        text=mask_pii(answer.text),
        in_reply_to_message_id=message.message_id,
        customer_id=message.customer.customer_id,
        sender="bot",
    )
    reply.sent_at.GetCurrentTime()
    return reply


def thread_entry_of(reply: OutboundMessage, message: InboundMessage, answer: Answer) -> InboundMessage:
    """The bot's answer as the conversation's thread keeps it (docs/desktop-protocol.md): a message of the thread
    with `attributes.sender` = "bot" and the template, so a later owner's desk shows it in order."""
    entry = InboundMessage(
        message_id=reply.message_id,
        tenant_id=reply.tenant_id,
        conversation_id=reply.conversation_id,
        channel=reply.channel,
        customer=message.customer,
        kind=MessageKind.MESSAGE_KIND_TEXT,
        text=reply.text,
        language=message.language,
        attributes={"sender": "bot", "bot_template": answer.template},
    )
    entry.sent_at.CopyFrom(reply.sent_at)
    entry.received_at.CopyFrom(reply.sent_at)
    return entry
