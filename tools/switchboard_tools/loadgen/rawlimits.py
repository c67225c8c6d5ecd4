"""The raw limits of this machine, measured the way switchboard uses each part, without switchboard around it.

- Kafka: records produced (idempotent, acks=all, the RecordProducer's batching) and consumed (`getmany`) by one
  process, per second from the first send to the last record read: a produce→consume passthrough.
- Redis: EVALSHA of a small script (INCR + XADD, the shape of a desk append), from 32 concurrent callers.
- Websocket: text frames echoed by a bare `websockets` server on loopback, 32 clients each keeping 8 in flight.

Each runs in this process on the same event loop as its clients, as the services do with theirs.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from switchboard.runtime.kafka import kafka_options_for
from switchboard.runtime.redis_client import redis_for

PAYLOAD = ("switchboard bench 客服 " * 12).encode()[:300]


@dataclass(frozen=True)
class Rate:
    """Operations per second over a measured count and time."""

    name: str
    count: int
    seconds: float

    @property
    def per_s(self) -> float:
        """Operations per second."""
        return self.count / self.seconds if self.seconds > 0 else 0.0


async def kafka_passthrough(bootstrap: str, seconds: float, partitions: int = 4) -> Rate:
    """Produce for `seconds` and consume everything produced; records per second end to end."""
    topic = f"bench.passthrough.{uuid.uuid4().hex[:8]}"
    connection = kafka_options_for(bootstrap)
    admin = AIOKafkaAdminClient(**connection)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
        producer = AIOKafkaProducer(
            **connection, enable_idempotence=True, acks="all", linger_ms=5, max_batch_size=256 * 1024
        )
        consumer = AIOKafkaConsumer(topic, **connection, group_id=None, auto_offset_reset="earliest")
        await producer.start()
        await consumer.start()
        try:
            return await _passthrough(producer, consumer, topic, seconds)
        finally:
            await producer.stop()
            await consumer.stop()
    finally:
        await admin.delete_topics([topic])
        await admin.close()


async def _passthrough(producer: AIOKafkaProducer, consumer: AIOKafkaConsumer, topic: str, seconds: float) -> Rate:
    # A fresh topic's leaders take a moment: one acknowledged record first, so the clock starts on a ready topic.
    await (await producer.send(topic, PAYLOAD))
    sent = 1
    received = 0
    started = time.perf_counter()

    async def produce() -> None:
        nonlocal sent
        while time.perf_counter() - started < seconds:
            batch = [await producer.send(topic, PAYLOAD, key=str(i % 64).encode()) for i in range(500)]
            await asyncio.gather(*batch)
            sent += len(batch)

    async def consume() -> None:
        nonlocal received
        while not (producing.done() and received >= sent):
            for records in (await consumer.getmany(timeout_ms=200, max_records=5000)).values():
                received += len(records)

    producing = asyncio.create_task(produce())
    await asyncio.gather(producing, consume())
    return Rate("kafka produce→consume", received, time.perf_counter() - started)


_SCRIPT = "redis.call('INCR', KEYS[1]) return redis.call('XADD', KEYS[2], 'MAXLEN', '~', 1000, '*', 'e', ARGV[1])"


async def redis_evalsha(redis_url: str, seconds: float, callers: int = 32) -> Rate:
    """EVALSHA calls per second of a desk-append-shaped script."""
    redis = redis_for(redis_url)
    prefix = f"bench:{uuid.uuid4().hex[:8]}"
    try:
        sha = await redis.script_load(_SCRIPT)
        done = 0
        started = time.perf_counter()

        async def caller() -> None:
            nonlocal done
            while time.perf_counter() - started < seconds:
                await redis.evalsha(sha, 2, f"{prefix}:seq", f"{prefix}:stream", PAYLOAD)
                done += 1

        await asyncio.gather(*(caller() for _ in range(callers)))
        return Rate("redis EVALSHA", done, time.perf_counter() - started)
    finally:
        await redis.delete(f"{prefix}:seq", f"{prefix}:stream")
        await redis.aclose()


async def websocket_echo(seconds: float, clients: int = 32, window: int = 8) -> Rate:
    """Echoed frames per second through a bare websocket server on loopback."""

    async def echo(ws: ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    async with serve(echo, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        done = 0
        started = time.perf_counter()

        async def client() -> None:
            nonlocal done
            async with connect(f"ws://127.0.0.1:{port}") as ws:
                frame = PAYLOAD.decode("utf-8", "ignore")
                while time.perf_counter() - started < seconds:
                    for _ in range(window):
                        await ws.send(frame)
                    for _ in range(window):
                        await ws.recv()
                    done += window

        await asyncio.gather(*(client() for _ in range(clients)))
        return Rate("websocket echo", done, time.perf_counter() - started)
