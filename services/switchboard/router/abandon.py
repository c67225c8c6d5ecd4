"""Customers who left while waiting: a caller who hung up (call.ended) and a chat customer away past patience.

A queued conversation leaves its queues; an offered one also gives the offered agent's slot back (an offer holds
one) and revokes the offer on the agent's desk; both become ABANDONED routing events with the wait from the
original arrival, counted in the service level (state/figures.py). An assigned conversation is left to its agent
(the call.ended message reaches their desk as before); a closed, abandoned or unknown one is never reopened by a
call.ended. A chat customer who comes back and writes is routed again with the original arrival time (inbound).
"""

from __future__ import annotations

from collections.abc import Sequence

from switchboard.contracts import CallEvent, InboundMessage, MessageKind
from switchboard.router.context import RouterContext, conversation_expectation, read_conversation
from switchboard.router.contract import AbandonRequest, Decision
from switchboard.router.drain import drain_agents
from switchboard.router.snapshot import read_agents
from switchboard.routing.commands import ConversationView
from switchboard.routing.config import TenantRouting
from switchboard.runtime.logs import get_logger
from switchboard.state.departures import forget_gone, gone_before

log = get_logger(__name__)

CALL_ENDED = "call_ended"
CHAT_PATIENCE = "chat_patience"
# A conversation that kept changing under the abandon script is tried again this often, then left to the sweep.
RETRIES = 5
# Chat conversations looked at per tenant per sweep.
GONE_BATCH = 200


def is_call_ended(message: InboundMessage) -> bool:
    """The caller hung up (the phone adapter's call.ended)."""
    return (
        message.kind == MessageKind.MESSAGE_KIND_CALL_EVENT
        and message.HasField("phone")
        and message.phone.event == CallEvent.CALL_EVENT_ENDED
    )


class Abandonment:
    """Takes conversations whose customer left out of the queue (one per router process)."""

    def __init__(self, ctx: RouterContext) -> None:
        self.ctx = ctx

    async def call_ended(self, config: TenantRouting, message: InboundMessage) -> bool:
        """Handle a call.ended of a conversation that is not assigned; False when it is (deliver it as usual)."""
        for _ in range(RETRIES):
            view = await read_conversation(self.ctx, config.tenant, message.conversation_id)
            if view.state == "assigned":
                return False
            found = await self._abandon(config, view, CALL_ENDED, mid=message.message_id)
            if not (found and found[0].type == "changed"):
                return True
        raise RuntimeError(f"conversation {message.conversation_id} kept changing while its call ended")

    async def sweep_gone(self, config: TenantRouting, now: int) -> int:
        """Abandon chat conversations whose customer has been gone longer than the tenant's patience."""
        await forget_gone(self.ctx.redis, self.ctx.keys, config.tenant, now)
        patience = config.abandonment.chat_patience_s
        if patience is None:
            return 0
        before = now - int(patience * 1000)
        abandoned = 0
        for conv in await gone_before(self.ctx.redis, self.ctx.keys, config.tenant, before, GONE_BATCH):
            view = await read_conversation(self.ctx, config.tenant, conv)
            found = await self._abandon(config, view, CHAT_PATIENCE, gone_before=before)
            abandoned += sum(1 for d in found if d.type == "abandoned")
        return abandoned

    async def _abandon(
        self, config: TenantRouting, view: ConversationView, reason: str, *, mid: str = "", gone_before: int = 0
    ) -> list[Decision]:
        ctx, tenant = self.ctx, config.tenant
        ks = ctx.key_set(config).conversation(view.conversation_id)
        if mid:
            ks.add(ctx.keys.processed(tenant, "router", mid))
        if gone_before:
            ks.gone()
        bump: tuple[str, ...] = ()
        if view.channel:
            # Its queues are those of its own group and overflow rings: any of the tenant's groups.
            ks.groups([g.name for g in config.skill_groups], view.channel)
        if view.state == "offered" and view.offer_agent:
            agent = (await read_agents(ctx.redis, ctx.keys, tenant, [view.offer_agent])).get(view.offer_agent)
            bump = tuple(sorted(agent.groups)) if agent is not None else ()
            ks.agent(view.offer_agent).capacity_versions(bump)
        request = AbandonRequest(view.conversation_id, conversation_expectation(view), reason, mid, gone_before, bump)
        now = ctx.clock()
        found = await ctx.apply(config, ctx.scripts.abandon, ks, request.encode(), now, unsent=not mid)
        self._log(tenant, found)
        freed = sorted({d.agent for d in found if d.type == "abandoned" and d.agent})
        if freed:
            await drain_agents(ctx, config, freed, now)
        return found

    @staticmethod
    def _log(tenant: str, found: Sequence[Decision]) -> None:
        for d in found:
            if d.type == "not_abandoned":
                log.info("abandon_skipped", tenant=tenant, conv=d.conv, state=d.state, reason=d.reason)
