"""Reading the tenant's state the planner works on: agents of some groups, queue lengths, conversations.

A snapshot is only a plan's input: every claim is re-checked atomically by the scripts.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field

from redis.asyncio import Redis
from redis.exceptions import BusyLoadingError, ClusterError, RedisClusterException, ResponseError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from switchboard.routing.chain import AgentIndex, AgentView, GroupStats
from switchboard.routing.config import CHANNELS
from switchboard.runtime.errors import TransientError
from switchboard.runtime.redis_client import describe_redis_error
from switchboard.state.keys import Keys

# What a router script answers (lib.lua `begin`) when the router's state mark of the tenant is missing.
STATE_LOST = "switchboard: state lost"


class StateLost(TransientError):
    """A script found the router's state mark missing (Redis lost its data): nothing was written; the batch is
    retried, and the handler's `ready` rebuilds the tenant first."""


@contextlib.asynccontextmanager
async def redis_guard() -> AsyncIterator[None]:
    """Turn Redis being unreachable, loading or busy into TransientError: the consumer pauses, nothing is guessed."""
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError, BusyLoadingError, ClusterError, TryAgainError) as exc:
        # A cluster that is down or whose slot owner cannot be reached (redis-py strips the CLUSTERDOWN / TRYAGAIN
        # prefixes from these replies, so they are told apart by class).
        raise TransientError(f"redis unavailable: {describe_redis_error(exc)}") from exc
    except RedisClusterException as exc:
        # No node of the cluster answers at all (raised outside redis-py's RedisError tree).
        raise TransientError(f"redis unavailable: {describe_redis_error(exc)}") from exc
    except ResponseError as exc:
        if STATE_LOST in str(exc):
            raise StateLost(f"router state lost: {exc}") from exc
        if str(exc).startswith(("BUSY", "OOM", "LOADING", "MASTERDOWN", "READONLY")):
            raise TransientError(f"redis refused: {exc!r}") from exc
        raise


@dataclass
class Snapshot:
    """Agents of the groups read, by id, queue lengths per group, and each group's capacity version."""

    agents: dict[str, AgentView] = field(default_factory=dict)
    stats: dict[str, GroupStats] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)
    _index: AgentIndex | None = None

    def views(self) -> list[AgentView]:
        """Every agent read."""
        return list(self.agents.values())

    def index(self) -> AgentIndex:
        """The agents indexed by id and group (built once)."""
        if self._index is None:
            self._index = AgentIndex.of(self.agents.values())
        return self._index


async def read_agents(redis: Redis, keys: Keys, tenant: str, agent_ids: Iterable[str]) -> dict[str, AgentView]:
    """HGETALL of each agent, as AgentViews."""
    ids = sorted(set(agent_ids))
    pipe = redis.pipeline(transaction=False)
    for agent in ids:
        pipe.hgetall(keys.agent(tenant, agent))
    rows = await pipe.execute()
    return {agent: AgentView.from_hash(agent, row) for agent, row in zip(ids, rows, strict=True) if row}


async def read_groups(redis: Redis, keys: Keys, tenant: str, groups: Iterable[str]) -> Snapshot:
    """The agents of the groups and each group's queue length, per channel and in all."""
    names = sorted(set(groups))
    pipe = redis.pipeline(transaction=False)
    for group in names:
        pipe.smembers(keys.group_agents(tenant, group))
    for group in names:
        for ch in CHANNELS:
            pipe.zcard(keys.queue_channel(tenant, group, ch))
    for group in names:
        pipe.get(keys.group_capacity_version(tenant, group))
    rows = await pipe.execute()
    members: set[str] = set()
    for row in rows[: len(names)]:
        members.update(m.decode() for m in row)
    lengths = rows[len(names) : len(names) * (1 + len(CHANNELS))]
    versions = {group: int(v or 0) for group, v in zip(names, rows[len(names) * (1 + len(CHANNELS)) :], strict=True)}
    stats = {}
    for i, group in enumerate(names):
        row = lengths[i * len(CHANNELS) : (i + 1) * len(CHANNELS)]
        per_channel: dict[str, int] = {ch: int(n) for ch, n in zip(CHANNELS, row, strict=True)}
        stats[group] = GroupStats(queue_length=sum(per_channel.values()), channel_lengths=per_channel)
    return Snapshot(await read_agents(redis, keys, tenant, members), stats, versions)


def text(value: object) -> str:
    """A Redis reply as text ('' for nil)."""
    if isinstance(value, bytes):
        return value.decode()
    return value if isinstance(value, str) else ""
