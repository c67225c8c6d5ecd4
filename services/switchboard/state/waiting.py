"""Where a waiting customer stands: their conversation's place in the router's queue and the estimated wait.

Read-only over the router's keys (the conversation hash's `state`, `group`, `queues`, `channel`; the per-channel
queue `keys.queue_channel`, lowest score first) and the shared estimates of `state.figures` (seconds per queue
position per group and channel, written by the router). The three adapters tell customers from here — the chat
`queue` frame, the e-mail acknowledgement, the phone announcement — so a customer hears the same figure on every
channel, and a channel's wait comes from its own queue only (an e-mail backlog does not lengthen the chat wait).

Also here: whether the tenant's surge profile in force tells a channel's waiting customers at all
(`updates_on`), and how a wait is said to a customer in Chinese or English (`wait_phrase`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from switchboard.state.figures import Estimate, read_estimates
from switchboard.state.keys import Keys
from switchboard.state.surge import read_active_surge


@dataclass(frozen=True)
class QueuePlace:
    """A queued conversation's place (1 = next) in its group's queue of its channel, and the wait to tell."""

    conversation_id: str
    group: str
    channel: str
    position: int
    estimated_wait_s: int


def told_wait_s(estimate: Estimate | None, position: int | None, fallback_s_per_position: float) -> int:
    """Whole seconds to tell a customer at `position` (None: joining the queue now).

    The router's estimate when it wrote one; before that (a fresh deployment, a group nobody queued in yet) the
    caller's configured seconds per position, so a customer is never told nothing.
    """
    if estimate is not None:
        return round(estimate.wait_s(position))
    return round(max(1, position or 1) * fallback_s_per_position)


async def updates_on(redis: Redis, keys: Keys, tenant_id: str, channel: str) -> bool:
    """Whether the tenant's surge profile in force tells waiting customers of `channel` where they stand."""
    surge = await read_active_surge(redis, keys, tenant_id)
    return surge is not None and channel in surge.customer_updates()


async def place_of(
    redis: Redis, keys: Keys, tenant_id: str, conversation_id: str, fallback_s_per_position: float
) -> QueuePlace | None:
    """The conversation's place in the queue, or None when it is not queued (new, offered, assigned, closed)."""
    places = await places_of(redis, keys, [(tenant_id, conversation_id)], fallback_s_per_position)
    return places[0]


async def places_of(
    redis: Redis, keys: Keys, conversations: Sequence[tuple[str, str]], fallback_s_per_position: float
) -> list[QueuePlace | None]:
    """`place_of` for many (tenant, conversation) at once: two pipelined reads, then one estimate read per
    tenant (not one snapshot: a place shown is an estimate that the next look corrects)."""
    fields = await _read(
        redis, [("HMGET", keys.conversation(t, c), "state", "group", "queues", "channel") for t, c in conversations]
    )
    # A conversation waits in its own group's queue, and in the queues of overflow rings (`queues`) too: its place
    # is the one in its own group's queue, else in the first ring's that holds it.
    tries: list[tuple[int, str, str]] = []
    for i, (state, group, queues, channel) in enumerate(fields):
        if _text(state) != "queued" or not _text(channel):
            continue
        for g in dict.fromkeys(filter(None, [_text(group), *_text(queues).split(",")])):
            tries.append((i, g, _text(channel)))
    ranks = await _read(
        redis, [("ZRANK", keys.queue_channel(conversations[i][0], g, ch), conversations[i][1]) for i, g, ch in tries]
    )
    found: dict[int, tuple[str, str, int]] = {}
    for (i, g, ch), rank in zip(tries, ranks, strict=True):
        if rank is not None and i not in found:
            found[i] = (g, ch, int(rank) + 1)
    estimates = {t: await read_estimates(redis, keys, t) for t in {conversations[i][0] for i in found}}
    places: list[QueuePlace | None] = [None] * len(conversations)
    for i, (g, ch, position) in found.items():
        tenant, conversation = conversations[i]
        wait = told_wait_s(estimates[tenant].get((g, ch)), position, fallback_s_per_position)
        places[i] = QueuePlace(conversation, g, ch, position, wait)
    return places


@dataclass(frozen=True)
class ChannelQueue:
    """A tenant's waiting customers of one channel over all groups, and the longest wait a newcomer faces."""

    waiting: int
    newcomer_wait_s: int


async def channel_queue(redis: Redis, keys: Keys, tenant_id: str, channel: str) -> ChannelQueue:
    """What a customer of `channel` joining now faces before the router decided their group: everyone waiting on
    that channel ahead, and the longest newcomer's wait among the groups where someone waits (the group is not
    known yet; a group nobody waits for would most likely take them at once)."""
    estimates = {g: e for (g, ch), e in (await read_estimates(redis, keys, tenant_id)).items() if ch == channel}
    waiting = sum(e.queue_length for e in estimates.values())
    longest = max((e.wait_s() for e in estimates.values() if e.queue_length > 0), default=0.0)
    return ChannelQueue(waiting, round(longest))


def wait_phrase(seconds: float, language: str) -> str:
    """A wait as a customer is told it: "约 15 分钟" / "about 15 minutes", rounded up (to 5 minutes up to an
    hour, to hours up to two days, then days), so the promise errs on the long side."""
    minutes = max(1, math.ceil(seconds / 60))
    zh = language == "zh"
    if minutes <= 5:
        return f"约 {minutes} 分钟" if zh else f"about {minutes} minute{'s' if minutes > 1 else ''}"
    if minutes <= 60:
        five = math.ceil(minutes / 5) * 5
        return f"约 {five} 分钟" if zh else f"about {five} minutes"
    hours = math.ceil(minutes / 60)
    if hours <= 48:
        return f"约 {hours} 小时" if zh else f"about {hours} hours"
    days = math.ceil(hours / 24)
    return f"约 {days} 天" if zh else f"about {days} days"


async def _read(redis: Redis, commands: list[tuple[Any, ...]]) -> list[Any]:
    """Read commands in one non-transactional pipeline (one round trip per node on a cluster)."""
    if not commands:
        return []
    pipe = redis.pipeline(transaction=False)
    for name, *args in commands:
        pipe.execute_command(name, *args)
    return list(await pipe.execute())


def _text(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else (value or "")
