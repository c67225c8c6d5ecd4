"""Which agent may accept, decline, close or transfer a conversation: the gateway checks a desktop's command with
these rules before sending it, and the router decides with them before applying it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from switchboard.routing.chain import AgentView, refusal
from switchboard.routing.config import Capacity, SkillGroup

COMMANDS = ("accept", "decline", "close", "transfer")


@dataclass(frozen=True)
class ConversationView:
    """A conversation as the command rules see it (the router's conversation hash)."""

    conversation_id: str = ""
    exists: bool = False
    state: str = ""
    owner: str = ""
    offer_agent: str = ""
    epoch: int = 0
    channel: str = ""
    group: str = ""
    customer_id: str = ""
    declined: str = ""
    priority: int = 0
    enqueued_ms: int = 0
    lang: str = ""
    # The group whose agent serves it now (a transfer's target group), '' until it is first assigned.
    served_group: str = ""

    # The hash fields `of` reads (HMGET them in this order).
    FIELDS: ClassVar[tuple[str, ...]] = (
        "state",
        "owner",
        "offer_agent",
        "epoch",
        "channel",
        "group",
        "customer_id",
        "declined",
        "priority",
        "enqueued_ms",
        "lang",
        "served_group",
    )

    @classmethod
    def of(cls, conversation_id: str, fields: Mapping[str, str]) -> ConversationView:
        """From the hash fields (missing ones as ''); a conversation with none of them does not exist."""

        def number(name: str) -> int:
            try:
                return int(float(fields.get(name) or 0))
            except ValueError:
                return 0

        return cls(
            conversation_id=conversation_id,
            exists=any(fields.get(name) for name in cls.FIELDS),
            state=fields.get("state", ""),
            owner=fields.get("owner", ""),
            offer_agent=fields.get("offer_agent", ""),
            epoch=number("epoch"),
            channel=fields.get("channel", ""),
            group=fields.get("group", ""),
            customer_id=fields.get("customer_id", ""),
            declined=fields.get("declined", ""),
            priority=number("priority"),
            enqueued_ms=number("enqueued_ms"),
            lang=fields.get("lang", ""),
            served_group=fields.get("served_group", ""),
        )


def command_refusal(  # noqa: PLR0911 (one return per rule reads best)
    kind: str,
    agent_id: str,
    conv: ConversationView,
    *,
    epoch: int,
    session: int = 0,
    current_session: int = 0,
) -> str | None:
    """Why `agent_id` may not do `kind` on the conversation at `epoch` (0: the conversation's), or None.

    `session` is the desktop session the command came from and `current_session` the agent's newest one: a command
    of an older desktop session is refused, so a stale desktop cannot undo a newer decision.
    """
    if not conv.exists:
        return "not_found"
    if session and session < current_session:
        return "stale_session"
    if kind in ("accept", "decline"):
        if conv.state != "offered" or conv.offer_agent != agent_id:
            return "not_offered"
    elif kind in ("close", "transfer"):
        if conv.state != "assigned" or conv.owner != agent_id:
            return "not_owner"
    else:
        return "unknown_command"
    if epoch and epoch != conv.epoch:
        return "stale_epoch"
    return None


def transfer_refusal(agent_id: str, to_agent: str) -> str | None:
    """Why an agent may not transfer a conversation to the named agent whoever that is, or None."""
    return "same_agent" if to_agent == agent_id else None


def transfer_target_refusal(agent_id: str, target: AgentView | None, channel: str, capacity: Capacity) -> str | None:
    """Why a conversation of `channel` may not go to `target` now (the target's status and room), or None."""
    if target is None:
        return "target_unknown_agent"
    if transfer_refusal(agent_id, target.agent_id):
        return "same_agent"
    why = refusal(target, channel, capacity)
    return f"target_{why}" if why else None


def transfer_group_refusal(group: SkillGroup, channel: str) -> str | None:
    """Why a conversation of `channel` may not be transferred to `group` whoever serves it (the group does not take
    the channel: a phone call never enters a chat-only group), or None."""
    return None if group.takes(channel) else f"target_group_channel:{channel}"
