"""Benchmark: what one queue-stats tick costs a replica holding many sockets.

`python -m switchboard_tools.bench.gateway_queue_stats --sockets 20000` writes agents (each in a few skill groups of a
few tenants) and queued conversations to Redis under a throwaway key prefix, registers that many sessions in a
hub (no real sockets: this measures the reads and the fan-out, not websocket writes), runs ticks and prints their
duration, the Redis round trips' share and the frames queued. The keys are deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator

from redis.asyncio import Redis

from switchboard.gateway.hub import DeskHub
from switchboard.gateway.queue_stats import QueueStatsBroadcaster
from switchboard.gateway.session import DeskSession
from switchboard.gateway.settings import GatewaySettings
from switchboard.runtime.redis_client import redis_for
from switchboard.state.keys import Keys
from switchboard.state.roster import CHANNELS


async def _noop_send(frame: str) -> None:
    return None


async def _noop_close(code: int, reason: str) -> None:
    return None


async def _seed(redis: Redis, keys: Keys, args: argparse.Namespace) -> list[tuple[str, str]]:
    """Agents spread over tenants, each in `groups_per_agent` of `groups` groups; a queue per group and channel."""
    agents = []
    now = int(time.time() * 1000)
    pipe = redis.pipeline(transaction=False)
    for n in range(args.sockets):
        tenant, agent = f"shop-{n % args.tenants}", f"agent-{n}"
        groups = [f"group-{(n + k) % args.groups}" for k in range(args.groups_per_agent)]
        pipe.hset(keys.agent(tenant, agent), mapping={"groups": ",".join(groups), "status": "available"})
        for group in groups:
            pipe.sadd(keys.group_agents(tenant, group), agent)
        agents.append((tenant, agent))
    for t in range(args.tenants):
        for g in range(args.groups):
            for channel in CHANNELS:
                for q in range(args.queued):
                    conv = f"c-{g}-{channel}-{q}"
                    pipe.hset(keys.conversation(f"shop-{t}", conv), "enqueued_ms", now - q * 1000)
                    pipe.zadd(keys.queue_channel(f"shop-{t}", f"group-{g}", channel), {conv: now - q * 1000})
    await pipe.execute()
    return agents


async def _cleanup(redis: Redis, prefix: str) -> None:
    async for batch in _scan_batches(redis, f"{prefix}:*"):
        await redis.unlink(*batch)


async def _scan_batches(redis: Redis, pattern: str) -> AsyncIterator[list[bytes]]:
    batch: list[bytes] = []
    async for key in redis.scan_iter(match=pattern, count=5000):
        batch.append(key)
        if len(batch) >= 5000:
            yield batch
            batch = []
    if batch:
        yield batch


async def run(args: argparse.Namespace) -> None:
    """Seed, tick, print, clean up."""
    prefix = f"bench-qs-{uuid.uuid4().hex[:8]}"
    settings = GatewaySettings(key_prefix=prefix, redis_url=args.redis_url)
    keys = Keys(prefix)
    redis = redis_for(args.redis_url)
    try:
        agents = await _seed(redis, keys, args)
        hub = DeskHub(redis, keys, settings)
        for tenant, agent in agents:
            session = DeskSession(tenant, agent, 1, _noop_send, _noop_close, settings.send_queue_max)
            hub.sessions[session.key] = session
        broadcaster = QueueStatsBroadcaster(redis, keys, hub, settings)
        pairs = args.tenants * args.groups
        print(f"sockets={args.sockets} tenants={args.tenants} groups/tenant={args.groups} (tenant,group) pairs={pairs}")
        refresh = settings.queue_stats_groups_refresh_s
        for tick in range(args.ticks):
            # Tick 0 reads every socket's groups (all new); the last tick re-reads them as every refresh period.
            clock = refresh * 2 if tick == args.ticks - 1 else refresh / 2
            started = time.perf_counter()
            sent = await broadcaster.tick(int(time.time() * 1000), clock)
            elapsed = time.perf_counter() - started
            kind = "new sockets" if tick == 0 else "group refresh" if tick == args.ticks - 1 else "steady"
            print(f"tick {tick} ({kind}): {elapsed * 1000:.0f} ms, frames queued {sent}")
            for session in hub.sessions.values():
                session.queue.clear()
            await redis.zadd(keys.queue_channel("shop-0", "group-0", "chat"), {f"new-{tick}": time.time() * 1000})
    finally:
        await _cleanup(redis, prefix)
        await redis.aclose()


def main() -> None:
    """Parse arguments and run."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sockets", type=int, default=20000)
    parser.add_argument("--tenants", type=int, default=20)
    parser.add_argument("--groups", type=int, default=10, help="skill groups per tenant")
    parser.add_argument("--groups-per-agent", type=int, default=2)
    parser.add_argument("--queued", type=int, default=20, help="conversations per group and channel queue")
    parser.add_argument("--ticks", type=int, default=4)
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
