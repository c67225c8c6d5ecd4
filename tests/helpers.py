"""Test helpers: read what landed on a topic, wait on a condition with a deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer
from google.protobuf.message import Message

from switchboard.contracts import TYPE_HEADER, decode


async def read_topic(bootstrap: str, topic: str, count: int, timeout: float = 30.0) -> list[tuple[str, Message]]:
    """Read `count` records (key, message) from the start of `topic`, or fail after `timeout`."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    found: list[tuple[str, Message]] = []
    try:
        deadline = time.monotonic() + timeout
        while len(found) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{topic}: {len(found)} of {count} records after {timeout}s")
            batches = await consumer.getmany(timeout_ms=int(min(left, 0.5) * 1000))
            for records in batches.values():
                for r in records:
                    headers = {k: v.decode() for k, v in r.headers}
                    found.append((r.key.decode() if r.key else "", decode(headers.get(TYPE_HEADER), r.value)))
    finally:
        await consumer.stop()
    return found


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 30.0, what: str = "condition") -> None:
    """Poll an async check until it is true, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met after {timeout}s")
        await asyncio.sleep(0.05)
