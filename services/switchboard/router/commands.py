"""Agents' commands (accept, decline with reason, close with wrap-up code, transfer to an agent or a group).

The command script checks the conversation's epoch and the desktop's session epoch and does the whole change in
one step; decline and transfer-to-group are routed on with a plan made here, like a new conversation.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from switchboard.contracts import AgentCommand, AgentCommandType
from switchboard.router.claims import decisions, excluded_now
from switchboard.router.snapshot import text

if TYPE_CHECKING:
    from switchboard.router.engine import Router

COMMAND_NAMES = {
    AgentCommandType.AGENT_COMMAND_ACCEPT: "accept",
    AgentCommandType.AGENT_COMMAND_DECLINE: "decline",
    AgentCommandType.AGENT_COMMAND_CLOSE: "close",
    AgentCommandType.AGENT_COMMAND_TRANSFER: "transfer",
}


def invalid_command(cmd: AgentCommand, groups: set[str]) -> str | None:
    """Why a command cannot be applied (it goes to the DLQ), or None."""
    if not (cmd.command_id and cmd.conversation_id and cmd.agent_id) or cmd.type not in COMMAND_NAMES:
        return "agent command without command_id, conversation_id, agent_id or a known type"
    if COMMAND_NAMES[cmd.type] == "transfer" and bool(cmd.transfer_to_agent) == bool(cmd.transfer_to_group):
        return "transfer names neither or both of transfer_to_agent and transfer_to_group"
    if cmd.transfer_to_group and cmd.transfer_to_group not in groups:
        return f"transfer to unknown skill group {cmd.transfer_to_group!r}"
    return None


async def apply_command(router: Router, cmd: AgentCommand) -> str | None:
    """Apply one command; return why it was refused as bad input, or None (a stale one is refused quietly)."""
    config = router.configs.get(cmd.tenant_id) if cmd.tenant_id else None
    if config is None:
        return f"no routing config for tenant {cmd.tenant_id!r}"
    groups = {g.name for g in config.skill_groups}
    reason = invalid_command(cmd, groups)
    if reason is not None:
        return reason
    kind = COMMAND_NAMES[cmd.type]
    now = router.clock()
    meta: dict[str, Any] = {
        "cid": cmd.command_id,
        "type": kind,
        "agent": cmd.agent_id,
        "conv": cmd.conversation_id,
        "epoch": cmd.epoch,
        "session": cmd.session_epoch,
        "reason": cmd.reason,
        "wrap": cmd.wrap_up_code,
        "to_agent": cmd.transfer_to_agent,
        "to_group": cmd.transfer_to_group,
        "ttl": router.marker_ttl_s,
        "cands": [],
        "groups": [],
    }
    if kind == "decline" or cmd.transfer_to_group:
        group, channel, declined = await router.redis.hmget(
            router.keys.conversation(config.tenant, cmd.conversation_id), "group", "channel", "declined"
        )
        group_name = cmd.transfer_to_group or text(group)
        if group_name in groups and text(channel):
            snap = await router.snapshot(config, {group_name})
            excluded = excluded_now(text(declined), now) | {cmd.agent_id}
            chosen = router.plan_for(config, snap, group_name, text(channel), excluded=excluded)
            meta["cands"] = [{"a": c.agent_id, "g": c.group, "s": c.step} for c in chosen.candidates]
            meta["groups"] = chosen.groups
        else:
            meta["groups"] = [group_name] if group_name else []
    raw = await router.scripts.command(args=[router.ctx(config, now), json.dumps(meta)])
    await router.publish(config, decisions(raw), now)
    return None
