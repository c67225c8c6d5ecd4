"""Router benchmark: routing decisions per second and decision latency, next to a bare Redis script call.

    python -m switchboard_tools.bench.router [--conversations 20000] [--agents 200] [--batch 500]

Runs one router (its real handlers, claim scripts on the Redis at REDIS_URL, routing events built but kept in
memory instead of produced to Kafka) over new conversations of the Tmall example config:

- throughput: batches of `--batch` new conversations as fast as they go, with room for all (assign), and with
  every agent full (queue: each plan to queue checks its groups' capacity versions);
- latency: new conversations arriving at half the measured assign rate in consumer-sized batches; a
  conversation's latency is from its arrival to the end of its batch's decisions;
- the baseline: EVALSHA of a script that returns 1, one call per round trip and pipelined like the router.
Keys get a unique prefix and are deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from pathlib import Path

from redis.asyncio import Redis

from switchboard.contracts import Channel, InboundMessage
from switchboard.router.engine import MemorySink, Router
from switchboard.router.reload import ConfigStore
from switchboard.router.settings import REPO_ROUTING_DIR
from switchboard.runtime.redis_client import redis_for
from switchboard.state.keys import Keys

T = "tmall-flagship"
TEXTS = ["这个尺码合适吗", "我要退货 衣服破了", "快递到哪了", "优惠券怎么用", "帮我改地址", "在吗", "急！什么时候发货"]
GROUPS = ["presales", "orders", "after_sales", "logistics", "complaints", "promotions", "general"]


def message(n: int, run: str) -> InboundMessage:
    """The `n`th new conversation of a run: its first message, one of TEXTS, from its own customer."""
    m = InboundMessage(
        message_id=f"{run}-m{n}",
        tenant_id=T,
        conversation_id=f"{run}-c{n}",
        channel=Channel.CHANNEL_CHAT,
        text=TEXTS[n % len(TEXTS)],
    )
    m.customer.customer_id = f"buyer-{n}"
    return m


async def put_agents(redis: Redis, keys: Keys, count: int, chat: int) -> None:
    pipe = redis.pipeline(transaction=False)
    for i in range(count):
        groups = [GROUPS[i % len(GROUPS)], GROUPS[(i + 3) % len(GROUPS)], "general"]
        agent = f"agent-{i}"
        pipe.hset(
            keys.agent(T, agent),
            mapping={
                "status": "available",
                "groups": ",".join(groups),
                "cap:chat": chat,
                "cap:email": 5,
                "cap:phone": 1,
                "multiplier": 1,
                "status_since_ms": int(time.time() * 1000),
            },
        )
        pipe.sadd(keys.tenant_agents(T), agent)
        for group in groups:
            pipe.sadd(keys.group_agents(T, group), agent)
    await pipe.execute()


async def _redis_cpu(redis: Redis) -> float:
    info = await redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def _throughput(router: Router, total: int, batch: int, run: str) -> tuple[float, float, float]:
    """Decisions per second, and CPU microseconds per decision in this process and in Redis."""
    messages = [message(n, run) for n in range(total)]
    redis_before, cpu_before = await _redis_cpu(router.context.redis), time.process_time()
    started = time.perf_counter()
    for i in range(0, total, batch):
        await router.handle_inbound(messages[i : i + batch])
    elapsed = time.perf_counter() - started
    cpu = (time.process_time() - cpu_before) / total * 1e6
    redis_cpu = (await _redis_cpu(router.context.redis) - redis_before) / total * 1e6
    return total / elapsed, cpu, redis_cpu


async def _latency(router: Router, rate: float, seconds: float, batch_max: int, run: str) -> list[float]:
    """Arrivals at `rate`; each loop takes what arrived (up to batch_max) like a consumer poll."""
    total = int(rate * seconds)
    messages = [message(n, run) for n in range(total)]
    latencies: list[float] = []
    start = time.perf_counter()
    done = 0
    while done < total:
        now = time.perf_counter()
        due = min(total, int((now - start) * rate) + 1)
        if due <= done:
            await asyncio.sleep(max(0.0, (done + 1) / rate - (now - start)))
            continue
        take = min(due, done + batch_max)
        await router.handle_inbound(messages[done:take])
        finished = time.perf_counter()
        latencies.extend(finished - (start + n / rate) for n in range(done, take))
        done = take
    return latencies


async def _bare_evalsha(redis: Redis, calls: int, batch: int) -> tuple[float, float]:
    script = redis.register_script("return 1")
    await script()
    started = time.perf_counter()
    for _ in range(calls):
        await script()
    single = calls / (time.perf_counter() - started)
    started = time.perf_counter()
    for _ in range(0, calls * 5, batch):
        pipe = redis.pipeline(transaction=False)
        for _ in range(batch):
            await script(client=pipe)
        await pipe.execute()
    return single, calls * 5 / (time.perf_counter() - started)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def bench(args: argparse.Namespace) -> None:
    """Run every measurement and print the figures."""
    redis = redis_for(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    keys = Keys(f"bench{uuid.uuid4().hex[:8]}")
    store = ConfigStore(Path(os.environ.get("SB_ROUTING_CONFIG_DIR", REPO_ROUTING_DIR)))
    store.poll()
    router = Router(redis, keys, store, MemorySink(), instance="bench", snapshot_ttl_s=args.snapshot_ttl_s)
    try:
        single, pipelined = await _bare_evalsha(redis, args.evalsha_calls, args.batch)
        per_agent = args.conversations * 3 // args.agents + 10
        await put_agents(redis, keys, args.agents, per_agent)
        await _throughput(router, 1000, args.batch, "warm")
        assign, assign_cpu, assign_redis = await _throughput(router, args.conversations, args.batch, "assign")
        await put_agents(redis, keys, args.agents, 0)
        router.context.forget_snapshots(T)  # the agents changed under the router's feet: start the phase fresh
        queue, queue_cpu, queue_redis = await _throughput(router, args.conversations // 4, args.batch, "queue")
        await put_agents(redis, keys, args.agents, per_agent)
        router.context.forget_snapshots(T)
        latencies = await _latency(router, assign / 2, args.seconds, args.latency_batch, "paced")
        print(f"router bench: {args.agents} agents, Tmall example config, Redis {os.environ.get('REDIS_URL', '')}")
        print(
            f"  bare EVALSHA 'return 1'     {single:10.0f} calls/s one per round trip, "
            f"{pipelined:.0f} calls/s pipelined by {args.batch}"
        )
        print(
            f"  new conversations assigned  {assign:10.0f} decisions/s (batches of {args.batch}); CPU per decision: "
            f"router {assign_cpu:.0f} us, redis {assign_redis:.0f} us"
        )
        print(
            f"  new conversations queued    {queue:10.0f} decisions/s (every agent full); CPU per decision: "
            f"router {queue_cpu:.0f} us, redis {queue_redis:.0f} us"
        )
        print(f"  load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores while measuring")
        print(
            f"  latency at {assign / 2:.0f}/s         p50 {_pct(latencies, 0.5):.1f} ms  "
            f"p99 {_pct(latencies, 0.99):.1f} ms  max {max(latencies) * 1000:.1f} ms  "
            f"(mean {statistics.fmean(latencies) * 1000:.1f} ms, {len(latencies)} conversations)"
        )
    finally:
        async for key in redis.scan_iter(keys.tenant_pattern(T), count=5000):
            await redis.unlink(key)
        await redis.aclose()


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m switchboard_tools.bench.router`."""
    parser = argparse.ArgumentParser(
        prog="python -m switchboard_tools.bench.router", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--conversations", type=int, default=20_000)
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of the paced latency run")
    parser.add_argument(
        "--latency-batch", type=int, default=100, help="most records one poll hands over in the paced run"
    )
    parser.add_argument("--evalsha-calls", type=int, default=5_000)
    parser.add_argument("--snapshot-ttl-s", type=float, default=0.2, help="as SB_SNAPSHOT_TTL_S (router default)")
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop", help="event loop (the router's)")
    args = parser.parse_args(argv)
    from switchboard.router.service import tune_gc

    tune_gc()  # as the router process does
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(bench(args))
    else:
        asyncio.run(bench(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
