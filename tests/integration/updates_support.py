"""What the customer-update tests share: a tenant's surge profile switched on as presence does it, and the
router's state for a waiting conversation (its hash, its queue, the group's estimate) as the router writes it."""

from __future__ import annotations

import time

from redis.asyncio import Redis

from switchboard.routing.surge import CustomerUpdates, SurgeProfile
from switchboard.state.figures import Estimate, Estimates, write_estimates
from switchboard.state.keys import Keys


async def switch_on(
    redis: Redis,
    keys: Keys,
    tenant: str,
    *,
    chat: bool = False,
    email: bool = False,
    phone: bool = False,
    name: str = "double11",
) -> None:
    """Define a surge profile with these customer updates and put it in force (presence's keys, docs/state.md)."""
    profile = SurgeProfile(tenant_factor=1.5, customer_updates=CustomerUpdates(chat=chat, email=email, phone=phone))
    await redis.hset(keys.surge_profiles(tenant), name, profile.model_dump_json())
    await redis.hset(keys.surge_state(tenant), mapping={"active": name, "since_ms": int(time.time() * 1000)})


async def switch_off(redis: Redis, keys: Keys, tenant: str) -> None:
    """No profile in force."""
    await redis.delete(keys.surge_state(tenant))


async def put_queued(
    redis: Redis, keys: Keys, tenant: str, conversation: str, group: str, channel: str, *, ahead: int
) -> None:
    """The router's state of a queued conversation with `ahead` others before it in its group's channel queue."""
    now = int(time.time() * 1000)
    members: dict[str | bytes, float] = {f"{conversation}-ahead-{i}": now - 10_000 + i for i in range(ahead)}
    members[conversation] = now
    await redis.zadd(keys.queue_channel(tenant, group, channel), members)
    await redis.hset(
        keys.conversation(tenant, conversation),
        mapping={"state": "queued", "group": group, "channel": channel, "enqueued_ms": now, "queues": group},
    )


async def put_estimate(
    redis: Redis, keys: Keys, tenant: str, group: str, channel: str, seconds_per_position: float, length: int
) -> None:
    """The router's estimate of one group's queue of one channel."""
    estimates = Estimates()
    estimates.put(group, channel, Estimate(seconds_per_position, length, int(time.time() * 1000)))
    await write_estimates(redis, keys, tenant, estimates)
