"""Presence figures on this machine: roster load, logins, heartbeats, a sweep of lost agents, a surge factor.

    KAFKA_BOOTSTRAP=… REDIS_URL=… python -m switchboard_tools.bench.presence --agents 5000

Uses its own topic and key prefix, and deletes its keys afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence

from switchboard.presence.audit import AuditLog
from switchboard.presence.control import SurgeControl
from switchboard.presence.sweep import Sweeper
from switchboard.runtime.kafka import RecordProducer, ensure_topics
from switchboard.runtime.redis_client import redis_client
from switchboard.runtime.settings import ServiceSettings
from switchboard.runtime.topics import Topics
from switchboard.state.agents import PresenceStore
from switchboard.state.keys import Keys
from switchboard.state.roster import ChannelSlots, Roster, RosterAgent, RosterTenant

TENANT = "bench-shop"


async def _in_parallel(items: Sequence[str], work: Callable[[str], Awaitable[object]], concurrency: int) -> None:
    queue = list(items)

    async def worker() -> None:
        while queue:
            await work(queue.pop())

    await asyncio.gather(*(worker() for _ in range(concurrency)))


def _report(what: str, count: int, seconds: float) -> None:
    print(f"{what:<44} {count:>7} in {seconds:7.2f} s  = {count / seconds:9.0f} /s")


async def bench(agents: int, concurrency: int) -> None:
    """Run every step once and print its figure."""
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    settings = ServiceSettings(topic_prefix=prefix, key_prefix=prefix.rstrip("."), service_name="presence-bench")
    await ensure_topics(settings.kafka_bootstrap, Topics(prefix).specs(3))
    redis = redis_client(settings)
    producer = RecordProducer(settings)
    await producer.start()
    try:
        store = PresenceStore(redis, Keys(settings.key_prefix), producer)
        ids = [f"agent-{i:05d}" for i in range(agents)]
        roster = Roster(
            tenants=[
                RosterTenant(
                    tenant_id=TENANT,
                    agents=[
                        RosterAgent(agent_id=a, groups=["presales", f"g{i % 10}"], capacity=ChannelSlots(chat=5))
                        for i, a in enumerate(ids)
                    ],
                )
            ]
        )
        started = time.perf_counter()
        await store.load_roster(roster)
        _report("roster load (profile script + record)", agents, time.perf_counter() - started)

        epochs: dict[str, int] = {}

        async def login(agent_id: str) -> None:
            epochs[agent_id] = await store.login(TENANT, agent_id)

        started = time.perf_counter()
        await _in_parallel(ids, login, concurrency)
        _report("logins (epoch + status + record + desk)", agents, time.perf_counter() - started)

        started = time.perf_counter()
        await _in_parallel(ids, lambda a: store.heartbeat(TENANT, a, epochs[a]), concurrency)
        _report("heartbeats", agents, time.perf_counter() - started)

        control = SurgeControl(store, AuditLog(redis, store.keys))
        started = time.perf_counter()
        changed = await control.scale_capacity(TENANT, 1.5, "operator:bench")
        _report("capacity factor for the tenant", len(changed), time.perf_counter() - started)

        sweeper = Sweeper(store, control, grace_s=0, interval_s=1)
        started = time.perf_counter()
        swept = 0
        while swept < agents:
            swept += await sweeper.sweep_heartbeats(TENANT, store.now_ms())
        _report("silent agents swept offline", swept, time.perf_counter() - started)
    finally:
        await producer.stop()
        async for key in redis.scan_iter(match=f"{settings.key_prefix}:*", count=1000):
            await redis.delete(key)
        await redis.aclose()


def main() -> None:
    """Parse arguments and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--agents", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    asyncio.run(bench(args.agents, args.concurrency))


if __name__ == "__main__":
    main()
