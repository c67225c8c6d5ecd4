"""Draining queues for agents with room: read the heads of their groups' queues, let the policy pick
(routing/drain.py), and have drain.lua claim the picks if the agent is still as read.

Called whenever capacity may have grown (a close, a decline, a transfer, an agent available or raised, a requeue,
a plan found stale) and by the sweep, so nothing waits while an eligible agent has room.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from switchboard.router.context import RouterContext, expectation
from switchboard.router.contract import Decision, DrainPick, DrainRequest
from switchboard.router.snapshot import read_agents, text
from switchboard.routing.chain import AgentView, offer_deadline_ms, refusal
from switchboard.routing.config import CHANNELS, TenantRouting
from switchboard.routing.drain import QueuedConversation, drain_order, need_of

# Queue heads read per (group, channel) per round; a drain reads again while the agent has room and the
# policy picks something. When the heads hold nothing the agent may take (a level ring or a language it does not
# meet yet, a decline), it looks DEEPER times further back, up to MAX_DEPTH per queue: a conversation it is
# eligible for behind higher-scored ones it is not must not wait while it has room.
HEADS = 10
ROUNDS = 20
DEEPER = 4
MAX_DEPTH = 640


def has_room(agent: AgentView, config: TenantRouting) -> bool:
    """Whether the agent could take one more conversation of any channel."""
    return any(refusal(agent, ch, config.capacity) is None for ch in CHANNELS)


async def read_heads(
    ctx: RouterContext, config: TenantRouting, agent: AgentView, depth: int = HEADS
) -> tuple[list[QueuedConversation], dict[str, tuple[str, tuple[str, ...]]], bool]:
    """The first `depth` of the agent's groups' queues of channels it has room for, each conversation's customer
    and groups (its own first, then the queues it waits in: the keys a claim declares), and whether a queue holds
    more than was read."""
    keys, tenant = ctx.keys, config.tenant
    known = {group.name for group in config.skill_groups}
    wanted = [
        (g, ch)
        for g in sorted(agent.groups)
        for ch in CHANNELS
        if refusal(agent, ch, config.capacity) is None and g in known
    ]
    pipe = ctx.redis.pipeline(transaction=False)
    for g, ch in wanted:
        pipe.zrange(keys.queue_channel(tenant, g, ch), 0, depth - 1, withscores=True)
    heads = await pipe.execute() if wanted else []
    more = any(len(rows) >= depth for rows in heads)
    found = [(g, ch, text(m), float(s)) for (g, ch), rows in zip(wanted, heads, strict=True) for m, s in rows]
    if not found:
        return [], {}, False
    convs = sorted({conv for _, _, conv, _ in found})
    pipe = ctx.redis.pipeline(transaction=False)
    for conv in convs:
        pipe.hmget(keys.conversation(tenant, conv), *_FIELDS)
    rows = dict(zip(convs, await pipe.execute(), strict=True))
    queued, extra = [], {}
    for g, ch, conv, score in found:
        state, epoch, declined, customer, queues, group, enq, lang = (text(v) for v in rows[conv])
        if state != "queued":
            continue
        queued.append(QueuedConversation(conv, g, ch, score, int(epoch or 0), declined, int(float(enq or 0)), lang))
        extra[conv] = (customer, (group, *(q for q in queues.split(",") if q)))
    return queued, extra, more


# The conversation hash fields a drain reads of each queued conversation (see read_heads).
_FIELDS = ("state", "epoch", "declined", "customer_id", "queues", "group", "enqueued_ms", "lang")


async def drain_agent(ctx: RouterContext, config: TenantRouting, agent_id: str, now: int) -> list[Decision]:
    """Give an agent with room the best queued work it may take, round after round while it has room."""
    out: list[Decision] = []
    depth = HEADS
    for _ in range(ROUNDS):
        agent = (await read_agents(ctx.redis, ctx.keys, config.tenant, [agent_id])).get(agent_id)
        if agent is None or not has_room(agent, config):
            break
        queued, extra, more = await read_heads(ctx, config, agent, depth)
        picks = drain_order(agent, queued, config, now)
        if not picks:
            if more and depth < MAX_DEPTH:
                depth *= DEEPER
                continue
            break
        depth = HEADS
        ks = ctx.key_set(config).agent(agent_id).capacity_versions(agent.groups)
        for pick in picks:
            customer, groups = extra[pick.conversation_id]
            ks.conversation(pick.conversation_id, customer).groups(groups, pick.channel)
        request = DrainRequest(
            agent_id,
            expectation(agent),
            tuple(DrainPick(p.conversation_id, p.group, p.epoch, _deadline(config, extra, p, now)) for p in picks),
            bump=tuple(sorted(agent.groups)),
        )
        needs = {p.conversation_id: need_of(config, p, now) for p in picks}
        found = await ctx.apply(config, ctx.scripts.drain, ks, request.encode(), now, unsent=True, needs=needs)
        out.extend(d for d in found if d.type != "drain_changed")
    return out


def _deadline(
    config: TenantRouting, extra: dict[str, tuple[str, tuple[str, ...]]], pick: QueuedConversation, now: int
) -> int:
    # The offer policy is the conversation's own group's (the first of its queues), whichever group serves it.
    return offer_deadline_ms(config, extra[pick.conversation_id][1][0], now)


async def drain_agents(ctx: RouterContext, config: TenantRouting, agent_ids: Iterable[str], now: int) -> list[Decision]:
    """Drain for each agent in turn."""
    out: list[Decision] = []
    for agent_id in agent_ids:
        out.extend(await drain_agent(ctx, config, agent_id, now))
    return out


async def drain_groups(ctx: RouterContext, config: TenantRouting, groups: Sequence[str], now: int) -> list[Decision]:
    """Drain for every agent of the groups who has room (after a plan found the groups' capacity changed)."""
    pipe = ctx.redis.pipeline(transaction=False)
    for group in groups:
        pipe.smembers(ctx.keys.group_agents(config.tenant, group))
    members = sorted({text(m) for row in await pipe.execute() for m in row})
    agents = await read_agents(ctx.redis, ctx.keys, config.tenant, members)
    ready = [a.agent_id for a in agents.values() if has_room(a, config)]
    return await drain_agents(ctx, config, ready, now)
