"""Agents' commands (accept, decline with reason, close with wrap-up code, transfer to an agent or a group).

The router reads the conversation and the agents involved, decides with the routing policy whether the command is
allowed (routing/commands.py, the same rules the gateway checks before sending it), and command.lua applies it if
nothing changed since the read; otherwise the router reads again. Decline and transfer to a group are routed on
with a plan made here, like a new conversation; capacity that a command frees is drained at once.
"""

from __future__ import annotations

from collections.abc import Sequence

from switchboard.contracts import AgentCommand, AgentCommandType
from switchboard.router.context import RouterContext, conversation_expectation, expectation, read_conversation
from switchboard.router.contract import CommandRequest, Decision, Route
from switchboard.router.drain import drain_agents, drain_groups
from switchboard.router.snapshot import read_agents, redis_guard, text
from switchboard.routing.chain import Plan
from switchboard.routing.commands import (
    ConversationView,
    command_refusal,
    transfer_group_refusal,
    transfer_target_refusal,
)
from switchboard.routing.config import TenantRouting
from switchboard.routing.exclusion import exclude, excluded_now
from switchboard.runtime.logs import get_logger

log = get_logger(__name__)

COMMAND_NAMES = {
    AgentCommandType.AGENT_COMMAND_ACCEPT: "accept",
    AgentCommandType.AGENT_COMMAND_DECLINE: "decline",
    AgentCommandType.AGENT_COMMAND_CLOSE: "close",
    AgentCommandType.AGENT_COMMAND_TRANSFER: "transfer",
}
# A command whose conversation or agents changed between the read and the script is read and decided again.
RETRIES = 5


def invalid_command(cmd: AgentCommand, groups: set[str]) -> str | None:
    """Why a command cannot be applied (it goes to the DLQ), or None."""
    if not (cmd.command_id and cmd.conversation_id and cmd.agent_id) or cmd.type not in COMMAND_NAMES:
        return "agent command without command_id, conversation_id, agent_id or a known type"
    if COMMAND_NAMES[cmd.type] == "transfer" and bool(cmd.transfer_to_agent) == bool(cmd.transfer_to_group):
        return "transfer names neither or both of transfer_to_agent and transfer_to_group"
    if cmd.transfer_to_group and cmd.transfer_to_group not in groups:
        return f"transfer to unknown skill group {cmd.transfer_to_group!r}"
    return None


class CommandHandler:
    """Applies agents' commands of any tenant, in order."""

    def __init__(self, ctx: RouterContext) -> None:
        self.ctx = ctx

    async def handle(self, commands: Sequence[AgentCommand]) -> list[tuple[AgentCommand, str]]:
        """Apply agents' commands in order; return those refused as bad input, with the reason."""
        refused: list[tuple[AgentCommand, str]] = []
        async with redis_guard():
            for command in commands:
                reason = await self.apply(command)
                if reason is not None:
                    refused.append((command, reason))
        return refused

    async def apply(self, cmd: AgentCommand) -> str | None:
        """Apply one command; return why it was refused as bad input, or None (a stale one is refused quietly)."""
        config = self.ctx.configs.get(cmd.tenant_id) if cmd.tenant_id else None
        if config is None:
            return f"no routing config for tenant {cmd.tenant_id!r}"
        reason = invalid_command(cmd, {g.name for g in config.skill_groups})
        if reason is not None:
            return reason
        await self.ctx.ready(config.tenant)
        for _ in range(RETRIES):
            found = await self._once(config, cmd)
            if not (found and found[0].type == "refused" and found[0].reason == "changed"):
                return None
        log.warning("command_kept_changing", tenant=config.tenant, command=cmd.command_id)
        return None

    async def _once(self, config: TenantRouting, cmd: AgentCommand) -> list[Decision]:
        ctx, tenant, kind, now = self.ctx, config.tenant, COMMAND_NAMES[cmd.type], self.ctx.clock()
        conv = await read_conversation(ctx, tenant, cmd.conversation_id)
        ids = [cmd.agent_id, *([cmd.transfer_to_agent] if cmd.transfer_to_agent else [])]
        agents = await read_agents(ctx.redis, ctx.keys, tenant, ids)
        actor = agents.get(cmd.agent_id)
        session = await ctx.redis.hget(ctx.keys.agent(tenant, cmd.agent_id), "session_epoch")
        why = command_refusal(
            kind,
            cmd.agent_id,
            conv,
            epoch=cmd.epoch or -1,
            session=cmd.session_epoch,
            current_session=int(text(session) or 0),
        )
        if why is None and cmd.transfer_to_agent:
            target = agents.get(cmd.transfer_to_agent)
            why = transfer_target_refusal(cmd.agent_id, target, conv.channel, config.capacity)
        if why is None and cmd.transfer_to_group:
            why = transfer_group_refusal(config.group(cmd.transfer_to_group), conv.channel)
        if why is not None:
            log.info(
                "command_refused", tenant=tenant, conv=cmd.conversation_id, agent=cmd.agent_id, reason=why, command=kind
            )
            return [Decision("refused", conv=cmd.conversation_id, agent=cmd.agent_id, reason=why, command=kind)]
        ks = ctx.key_set(config).add(ctx.keys.processed(tenant, "router", cmd.command_id))
        ks.conversation(cmd.conversation_id, conv.customer_id).agent(cmd.agent_id)
        bump = tuple(sorted(actor.groups)) if actor is not None else ()
        ks.capacity_versions(bump)
        route, chosen, declined = Route(), None, conv.declined
        back = int(config.offer_policy(cmd.transfer_to_group or conv.group).reoffer_after_s * 1000)
        if kind == "decline" or cmd.transfer_to_group:
            declined = exclude(conv.declined, cmd.agent_id, back, now)
            route, chosen = await self._reroute(
                config, conv, cmd.transfer_to_group or conv.group, declined, cmd.agent_id, now
            )
            ks.route(route, conv.channel)
        target_expects = None
        if cmd.transfer_to_agent:
            ks.agent(cmd.transfer_to_agent)
            target_expects = expectation(agents[cmd.transfer_to_agent])
        request = CommandRequest(
            cid=cmd.command_id,
            type=kind,
            agent=cmd.agent_id,
            conv=cmd.conversation_id,
            expect=conversation_expectation(conv),
            session=text(session),
            reason=cmd.reason,
            wrap=cmd.wrap_up_code,
            to_agent=cmd.transfer_to_agent,
            to_group=cmd.transfer_to_group,
            declined=declined,
            target=target_expects,
            route=route,
            bump=bump,
        )
        found = await ctx.apply(config, ctx.scripts.command, ks, request.encode(), now, chosen=chosen)
        if found and found[0].type == "refused":
            return found
        stale = sorted({d.group for d in found if d.stale})
        if stale:
            ctx.forget_snapshots(tenant)
            await drain_groups(ctx, config, stale, now)
        if kind in ("decline", "close", "transfer"):
            await drain_agents(ctx, config, [cmd.agent_id], now)
        return found

    async def _reroute(
        self, config: TenantRouting, conv: ConversationView, group: str, declined: str, agent_id: str, now: int
    ) -> tuple[Route, Plan]:
        """Where a declined or transferred conversation goes next (it keeps its priority and enqueue time); the
        agent who let it go is passed over for it."""
        return await self.ctx.reroute(config, conv, now, group=group, excluded=excluded_now(declined, now) | {agent_id})
