"""Drain order: which queued conversations an agent with room takes, and in which order.

Queues are served lowest score first across the agent's groups and channels (a score is the enqueue time minus
priority × aging, see `scoring`); a conversation the agent is passed over for (`exclusion`) is skipped, and so is
one of a channel the agent has no room left for, counting every take of the same drain.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from switchboard.routing.chain import AgentView, refusal
from switchboard.routing.config import Capacity
from switchboard.routing.exclusion import excluded_now


@dataclass(frozen=True)
class QueuedConversation:
    """A conversation at the head of one of a group's queues, as the router read it."""

    conversation_id: str
    group: str
    channel: str
    score: float
    epoch: int
    declined: str = ""


def drain_order(
    agent: AgentView, queued: Sequence[QueuedConversation], capacity: Capacity, now_ms: int
) -> list[QueuedConversation]:
    """The conversations the agent takes, best first, as many as its room allows."""
    room = replace(agent, used=dict(agent.used))
    picks: list[QueuedConversation] = []
    taken: set[str] = set()
    for item in sorted(queued, key=lambda q: (q.score, q.conversation_id)):
        if item.conversation_id in taken or item.group not in agent.groups:
            continue
        if agent.agent_id in excluded_now(item.declined, now_ms):
            continue
        if refusal(room, item.channel, capacity) is not None:
            continue
        taken.add(item.conversation_id)
        picks.append(item)
        room.used[item.channel] = room.used.get(item.channel, 0) + 1
    return picks
