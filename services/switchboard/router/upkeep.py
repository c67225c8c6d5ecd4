"""Reactions that do not come from a conversation's own records: presence changes and the safety sweep.

- An agent became available or got more capacity (surge multiplier): drain the queues for them at once.
- An agent is offline past the grace period: their conversations go back to the queue, original time and priority.
- The sweep (every `sweep_interval_s`, on every replica; the scripts make repeats harmless) times out offers even
  when no record arrives, widens overflow rings for conversations that waited past `after_s`, requeues departed
  agents' work, and drains queues for any agent with room, so a lost wake-up costs at most one interval.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from redis.commands.core import AsyncScript

from switchboard.contracts import AgentPresence, AgentStatus
from switchboard.router.chain import AgentView
from switchboard.router.claims import decisions, excluded_now
from switchboard.router.config import CHANNELS, TenantRouting
from switchboard.router.engine import Router
from switchboard.router.snapshot import Snapshot, read_agents, redis_guard, text
from switchboard.runtime.logs import get_logger

log = get_logger(__name__)


class Upkeep:
    """Presence reactions and the periodic sweep of one router process."""

    def __init__(self, router: Router) -> None:
        self.router = router

    async def handle_presence(self, records: Sequence[AgentPresence]) -> None:
        """React to agents' presence records in order."""
        async with redis_guard():
            for record in records:
                config = self.router.configs.get(record.tenant_id)
                if config is None or not record.agent_id:
                    continue
                now = self.router.clock()
                if record.status == AgentStatus.AGENT_STATUS_OFFLINE:
                    await self.requeue(config, record.agent_id, now)
                await self.drain(config, [record.agent_id], now)

    async def _run(self, config: TenantRouting, script: AsyncScript, meta: object, now: int) -> list[dict[str, Any]]:
        """Run a script without processed marker, publish its decisions, then take them out of the unsent set."""
        raw = await script(args=[self.router.ctx(config, now), json.dumps(meta)])
        found = decisions(raw)
        if found:
            await self.router.publish(config, found, now)
            await self.router.redis.zrem(self.router.keys.routing_unsent(config.tenant), raw)
        return found

    async def drain(self, config: TenantRouting, agents: Sequence[str], now: int) -> list[dict[str, Any]]:
        """Drain queues for these agents (the script re-checks status and capacity)."""
        if not agents:
            return []
        return await self._run(config, self.router.scripts.drain, list(agents), now)

    async def requeue(self, config: TenantRouting, agent: str, now: int) -> list[dict[str, Any]]:
        """Requeue a departed agent's conversations if they are offline past the grace period."""
        meta = {"agent": agent, "offline_before_ms": now - int(config.offline_grace_s * 1000)}
        return await self._run(config, self.router.scripts.requeue, meta, now)

    async def resend(self, config: TenantRouting, now: int, older_than_ms: int = 5_000) -> int:
        """Publish decisions a router recorded but did not get onto the routing topic (it died, or Kafka was down)."""
        key = self.router.keys.routing_unsent(config.tenant)
        stale = await self.router.redis.zrangebyscore(key, "-inf", now - older_than_ms, start=0, num=200)
        for raw in stale:
            assert isinstance(raw, bytes | str)
            await self.router.publish(config, decisions(raw), now)
            await self.router.redis.zrem(key, raw)
        return len(stale)

    async def sweep(self) -> None:
        """One pass over every configured tenant."""
        async with redis_guard():
            for tenant in self.router.configs.tenants():
                config = self.router.configs.get(tenant)
                if config is not None:
                    await self.sweep_tenant(config)

    async def sweep_tenant(self, config: TenantRouting) -> None:
        """Offer timeouts, departed agents, time-based overflow, then drains for agents with room."""
        router, keys, tenant = self.router, self.router.keys, config.tenant
        now = router.clock()
        ids = {text(m) for m in await router.redis.smembers(keys.tenant_agents(tenant))}
        agents = await read_agents(router.redis, keys, tenant, ids)
        snap = Snapshot(agents, {})
        due = await router.redis.zrangebyscore(keys.offers(tenant), "-inf", now, start=0, num=500)
        for conv in due:
            await self._time_out(config, snap, text(conv), now)
        for agent in agents.values():
            gone = agent.status == "offline" and now - agent.status_since_ms >= config.offline_grace_s * 1000
            if gone and await router.redis.scard(keys.agent_conversations(tenant, agent.agent_id)):
                await self.requeue(config, agent.agent_id, now)
        await self._overflow(config, now)
        await self.resend(config, now)
        if await self._queued(config):
            await self.drain(config, [a.agent_id for a in agents.values() if _has_room(a)], now)

    async def _time_out(self, config: TenantRouting, snap: Snapshot, conv: str, now: int) -> None:
        router = self.router
        group, channel, declined, agent = await router.redis.hmget(
            router.keys.conversation(config.tenant, conv), "group", "channel", "declined", "offer_agent"
        )
        meta: dict[str, Any] = {"conv": conv, "cands": [], "groups": [], "max_misses": config.offers.max_misses}
        name = text(group)
        if name in {g.name for g in config.skill_groups} and text(channel):
            meta["max_misses"] = config.offer_policy(name).max_misses
            # The agent whose offer timed out is passed over too (the script excludes them for the back-off).
            excluded = excluded_now(text(declined), now) | {text(agent)}
            chosen = router.plan_for(config, snap, name, text(channel), excluded=excluded)
            meta["cands"] = [{"a": c.agent_id, "g": c.group, "s": c.step} for c in chosen.candidates]
            meta["groups"] = chosen.groups
        await self._run(config, router.scripts.timeout, meta, now)

    async def _overflow(self, config: TenantRouting, now: int) -> None:
        router, keys, tenant = self.router, self.router.keys, config.tenant
        for group in config.skill_groups:
            rings = [r for r in group.overflow if r.after_s is not None]
            if not rings:
                continue
            for ch in CHANNELS:
                members = await router.redis.zrange(keys.queue_channel(tenant, group.name, ch), 0, 199)
                if not members:
                    continue
                pipe = router.redis.pipeline(transaction=False)
                for conv in members:
                    pipe.hmget(keys.conversation(tenant, text(conv)), "enqueued_ms", "queues", "group")
                rows = await pipe.execute()
                for conv, (enq, queues, primary) in zip(members, rows, strict=True):
                    if text(primary) != group.name:
                        continue
                    waited_s = (now - int(text(enq) or now)) / 1000
                    for ring in rings:
                        if waited_s >= (ring.after_s or 0) and ring.group not in text(queues).split(","):
                            meta = {"conv": text(conv), "ring": ring.group}
                            await self._run(config, router.scripts.overflow, meta, now)

    async def _queued(self, config: TenantRouting) -> bool:
        pipe = self.router.redis.pipeline(transaction=False)
        for group in config.skill_groups:
            for ch in CHANNELS:
                pipe.zcard(self.router.keys.queue_channel(config.tenant, group.name, ch))
        return any(int(n) for n in await pipe.execute())


def _has_room(agent: AgentView) -> bool:
    return agent.status == "available" and any(agent.used.get(ch, 0) < agent.capacity(ch) for ch in CHANNELS)
