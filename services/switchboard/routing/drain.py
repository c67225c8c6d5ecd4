"""Drain order: which queued conversations an agent with room takes, and in which order.

Queues are served lowest score first across the agent's groups and channels (a score is the enqueue time minus
priority × aging, see `scoring`); a conversation the agent is passed over for (`exclusion`) is skipped, and so is
one the agent is not eligible for at the time (`skills`: the level ring in force for the conversation's wait, its
language, the group's channels) and one of a channel the agent has no room left for, counting every take of the
same drain.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from switchboard.routing.chain import AgentView, refusal
from switchboard.routing.config import TenantRouting
from switchboard.routing.exclusion import excluded_now
from switchboard.routing.skills import Requirement, requirement


@dataclass(frozen=True)
class QueuedConversation:
    """A conversation at the head of one of a group's queues, as the router read it: `enqueued_ms` its original
    arrival (what its wait counts from), `language` the conversation's language."""

    conversation_id: str
    group: str
    channel: str
    score: float
    epoch: int
    declined: str = ""
    enqueued_ms: int = 0
    language: str = ""


def need_of(config: TenantRouting, item: QueuedConversation, now_ms: int) -> Requirement:
    """What the queue's group asks of an agent for this conversation now."""
    waited_s = max(0.0, (now_ms - (item.enqueued_ms or now_ms)) / 1000)
    return requirement(config, config.group(item.group), item.channel, item.language, waited_s)


def drain_order(
    agent: AgentView, queued: Sequence[QueuedConversation], config: TenantRouting, now_ms: int
) -> list[QueuedConversation]:
    """The conversations the agent takes, best first, as many as its room allows."""
    room = replace(agent, used=dict(agent.used))
    known = {group.name for group in config.skill_groups}
    picks: list[QueuedConversation] = []
    taken: set[str] = set()
    for item in sorted(queued, key=lambda q: (q.score, q.conversation_id)):
        if item.conversation_id in taken or item.group not in agent.groups or item.group not in known:
            continue
        if agent.agent_id in excluded_now(item.declined, now_ms):
            continue
        if agent.skill_refusal(need_of(config, item, now_ms), config.group(item.group)) is not None:
            continue
        if refusal(room, item.channel, config.capacity) is not None:
            continue
        taken.add(item.conversation_id)
        picks.append(item)
        room.used[item.channel] = room.used.get(item.channel, 0) + 1
    return picks
