"""Reactions that do not come from a conversation's own records: presence changes and the safety sweep.

- An agent became available or got more capacity (surge multiplier): drain the queues for them at once.
- An agent is offline past the grace period: their conversations go back to the queue, original time and priority.
- The sweep (every `sweep_interval_s`, on every replica; the scripts make repeats harmless) times out offers even
  when no record arrives, re-evaluates the overflow rings of queued conversations, requeues departed agents' work,
  and drains queues for any agent with room, so a lost wake-up costs at most one interval.
- The surge profile in force (router/surge.py) is read again on every sweep, and at once when a presence record
  names another one; when it changed, queued conversations are re-evaluated at once under the new rings.

Re-evaluating overflow checks every trigger of every ring of the config in force (with the profile's rings): the
ring's `after_s` against the conversation's own wait, and the group's estimated wait and service level as a new
conversation's plan would see them. A conversation joins each ring that fires (it never leaves a queue it is in).
"""

from __future__ import annotations

from collections.abc import Sequence

from switchboard.contracts import AgentPresence, AgentStatus
from switchboard.router.abandon import Abandonment
from switchboard.router.bot import BotAnswers
from switchboard.router.context import (
    Outcome,
    RouterContext,
    conversation_expectation,
    expectation,
    read_conversation,
)
from switchboard.router.contract import (
    Decision,
    RequeueItem,
    RequeueRequest,
    TimeoutRequest,
    decode_decisions,
)
from switchboard.router.drain import drain_agents, drain_groups, has_room
from switchboard.router.overflow import OverflowReevaluation
from switchboard.router.snapshot import read_agents, redis_guard, text
from switchboard.routing.chain import AgentIndex, AgentView, sets_away
from switchboard.routing.config import CHANNELS, TenantRouting
from switchboard.routing.exclusion import exclude, excluded_now
from switchboard.routing.scoring import stored_score
from switchboard.runtime.logs import get_logger
from switchboard.state.figures import Estimate, Estimates, write_estimates

log = get_logger(__name__)


def departed(agent: AgentView, config: TenantRouting, now: int) -> bool:
    """Removed (by an operator or a roster prune), or offline for longer than the tenant's grace period."""
    if agent.removed:
        return True
    return agent.status == "offline" and now - agent.status_since_ms >= config.offline_grace_s * 1000


class Upkeep:
    """Presence reactions and the periodic sweep of one router process."""

    def __init__(self, ctx: RouterContext, bot: BotAnswers | None = None) -> None:
        self.ctx = ctx
        self.abandonment = Abandonment(ctx)
        self.bot = bot
        self.overflow = OverflowReevaluation(ctx)

    async def handle_presence(self, records: Sequence[AgentPresence]) -> None:
        """React to agents' presence records in order."""
        async with redis_guard():
            for tenant in dict.fromkeys(r.tenant_id for r in records if self.ctx.configs.get(r.tenant_id)):
                await self.ctx.ready(tenant)
            for record in records:
                await self._follow_profile(record)
                config = self.ctx.configs.get(record.tenant_id)
                if config is None or not record.agent_id:
                    continue
                now = self.ctx.clock()
                if record.status == AgentStatus.AGENT_STATUS_OFFLINE:
                    await self.requeue(config, record.agent_id, now)
                await drain_agents(self.ctx, config, [record.agent_id], now)

    async def requeue(self, config: TenantRouting, agent_id: str, now: int) -> list[Decision]:
        """Requeue a departed agent's conversations if they are offline past the grace period."""
        ctx, tenant = self.ctx, config.tenant
        agent = (await read_agents(ctx.redis, ctx.keys, tenant, [agent_id])).get(agent_id)
        if agent is None or not departed(agent, config, now):
            return []
        convs = sorted(text(c) for c in await ctx.redis.smembers(ctx.keys.agent_conversations(tenant, agent_id)))
        if not convs:
            return []
        views = [await read_conversation(ctx, tenant, conv) for conv in convs]
        ks = ctx.key_set(config).agent(agent_id).capacity_versions(agent.groups)
        items = []
        for view in views:
            ks.conversation(view.conversation_id).groups([view.group], view.channel)
            score = stored_score(view.enqueued_ms or now, view.priority, config.queue.aging_s_per_point)
            items.append(RequeueItem(view.conversation_id, score))
        request = RequeueRequest(agent_id, expectation(agent), tuple(items), bump=tuple(sorted(agent.groups)))
        found = await ctx.apply(config, ctx.scripts.requeue, ks, request.encode(), now, unsent=True)
        groups = sorted({d.group for d in found if d.stale})
        if groups:
            await drain_groups(ctx, config, groups, now)
        return found

    async def _removed(self, config: TenantRouting, now: int) -> None:
        """Hand back what removed agents still hold (they are in no set of the tenant's agents any more)."""
        ctx, keys, tenant = self.ctx, self.ctx.keys, config.tenant
        ids = sorted(text(m) for m in await ctx.redis.smembers(keys.removed_agents(tenant)))
        for agent in (await read_agents(ctx.redis, keys, tenant, ids)).values():
            if agent.removed and await ctx.redis.scard(keys.agent_conversations(tenant, agent.agent_id)):
                await self.requeue(config, agent.agent_id, now)
            if not agent.removed or not await ctx.redis.scard(keys.agent_conversations(tenant, agent.agent_id)):
                await ctx.redis.srem(keys.removed_agents(tenant), agent.agent_id)

    async def resend(self, config: TenantRouting, now: int, older_than_ms: int = 5_000) -> int:
        """Publish decisions a router recorded but did not get onto the routing topic (it died, or Kafka was down)."""
        key = self.ctx.keys.routing_unsent(config.tenant)
        stale = await self.ctx.redis.zrangebyscore(key, "-inf", now - older_than_ms, start=0, num=200)
        for raw in stale:
            assert isinstance(raw, bytes | str)
            await self.ctx.publish(config, [Outcome(d) for d in decode_decisions(raw)], now)
            await self.ctx.redis.zrem(key, raw)
        return len(stale)

    async def resend_all(self, config: TenantRouting) -> None:
        """Publish every decision the tenant's unsent set holds now, however recent (around a rebuild)."""
        while await self.resend(config, self.ctx.clock(), older_than_ms=-1):
            pass

    async def sweep(self) -> None:
        """One pass over every configured tenant (its surge profile in force read first)."""
        async with redis_guard():
            for tenant in self.ctx.configs.tenants():
                await self.ctx.ready(tenant)
                switched = await self.refresh_profile(tenant)
                config = self.ctx.configs.get(tenant)
                if config is not None:
                    if switched:  # e.g. the profile in force redefined: no record names another profile
                        await self._overflow(config, self.ctx.clock(), whole=True)
                    await self.sweep_tenant(config)

    async def refresh_profile(self, tenant: str) -> bool:
        """Read the tenant's surge profile in force; True when it changed (then `configs.get` answers with the
        new effective config)."""
        return await self.ctx.configs.surge.refresh(self.ctx.redis, self.ctx.keys, tenant)

    async def _follow_profile(self, record: AgentPresence) -> None:
        """A record written under another profile than the one known: read it, and if it switched, re-evaluate
        the tenant's queued conversations under it at once."""
        surge = self.ctx.configs.surge
        if record.surge_profile == surge.name(record.tenant_id) or self.ctx.configs.base(record.tenant_id) is None:
            return
        if await self.refresh_profile(record.tenant_id):
            config = self.ctx.configs.get(record.tenant_id)
            if config is not None:
                await self._overflow(config, self.ctx.clock(), whole=True)

    async def sweep_tenant(self, config: TenantRouting) -> None:
        """Offer timeouts, departed agents, time-based overflow, then drains for agents with room."""
        ctx, keys, tenant = self.ctx, self.ctx.keys, config.tenant
        now = ctx.clock()
        ids = {text(m) for m in await ctx.redis.smembers(keys.tenant_agents(tenant))}
        agents = await read_agents(ctx.redis, keys, tenant, ids)
        due = await ctx.redis.zrangebyscore(keys.offers(tenant), "-inf", now, start=0, num=500)
        for conv in due:
            await self._time_out(config, text(conv), now)
        for agent in agents.values():
            if departed(agent, config, now) and await ctx.redis.scard(keys.agent_conversations(tenant, agent.agent_id)):
                await self.requeue(config, agent.agent_id, now)
        await self._removed(config, now)
        await self.abandonment.sweep_gone(config, now)
        await self._overflow(config, now)
        await self._bot_holds(config, now)
        await self.resend(config, now)
        lengths = await self._queue_lengths(config)
        await self._estimates(config, agents, lengths, now)
        if any(lengths.values()):
            agents = await read_agents(ctx.redis, keys, tenant, ids)
            await drain_agents(ctx, config, [a.agent_id for a in agents.values() if has_room(a, config)], now)

    async def _time_out(self, config: TenantRouting, conv_id: str, now: int) -> None:
        ctx, tenant = self.ctx, config.tenant
        conv = await read_conversation(ctx, tenant, conv_id)
        if conv.state != "offered":
            await ctx.redis.zrem(ctx.keys.offers(tenant), conv_id)
            return
        agent = (await read_agents(ctx.redis, ctx.keys, tenant, [conv.offer_agent])).get(conv.offer_agent)
        if agent is None or conv.group not in {g.name for g in config.skill_groups}:
            log.warning("offer_timeout_skipped", tenant=tenant, conv=conv_id, agent=conv.offer_agent)
            return
        back = int(config.offer_policy(conv.group).reoffer_after_s * 1000)
        declined = exclude(conv.declined, conv.offer_agent, back, now)
        route, chosen = await ctx.reroute(config, conv, now, excluded=excluded_now(declined, now) | {conv.offer_agent})
        ks = ctx.key_set(config).presence_pending().conversation(conv_id, conv.customer_id).agent(conv.offer_agent)
        ks.capacity_versions(agent.groups).route(route, conv.channel)
        request = TimeoutRequest(
            conv_id,
            conversation_expectation(conv),
            agent.missed_offers,
            agent.presence_version,
            sets_away(config, conv.group, agent),
            declined,
            route,
            bump=tuple(sorted(agent.groups)),
        )
        found = await ctx.apply(config, ctx.scripts.timeout, ks, request.encode(), now, unsent=True, chosen=chosen)
        stale = sorted({d.group for d in found if d.stale})
        if stale:
            ctx.forget_snapshots(tenant)
            await drain_groups(ctx, config, stale, now)
        if found:
            await drain_agents(ctx, config, [conv.offer_agent], now)

    async def _overflow(self, config: TenantRouting, now: int, *, whole: bool = False) -> None:
        """Re-evaluate queued conversations' overflow rings for every trigger (router/overflow.py)."""
        await self.overflow.run(config, now, whole=whole)

    async def _bot_holds(self, config: TenantRouting, now: int) -> None:
        """Conversations the bot held past their deadline (their router died mid-lookup) are routed."""
        if self.bot is not None:
            await self.bot.sweep_holds(config, now)

    async def _queue_lengths(self, config: TenantRouting) -> dict[tuple[str, str], int]:
        """Conversations waiting per (group, channel) of the tenant."""
        wanted = [(group.name, ch) for group in config.skill_groups for ch in CHANNELS]
        pipe = self.ctx.redis.pipeline(transaction=False)
        for group, ch in wanted:
            pipe.zcard(self.ctx.keys.queue_channel(config.tenant, group, ch))
        return {queue: int(n) for queue, n in zip(wanted, await pipe.execute(), strict=True)}

    async def _estimates(
        self, config: TenantRouting, agents: dict[str, AgentView], lengths: dict[tuple[str, str], int], now: int
    ) -> None:
        """Write each group's estimated wait per channel to the shared figures (state/figures.py): a queue place
        takes the group's average handle time over the channel's slots of its available agents."""
        index = AgentIndex.of(agents.values())
        estimates = Estimates()
        for group in config.skill_groups:
            for ch in CHANNELS:
                per_position = group.avg_handle_s / max(1, index.slots(group.name, ch))
                estimates.put(group.name, ch, Estimate(per_position, lengths.get((group.name, ch), 0), now))
        await write_estimates(self.ctx.redis, self.ctx.keys, config.tenant, estimates)
