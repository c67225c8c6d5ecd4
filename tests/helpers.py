"""Test helpers: read what landed on a topic, wait on a condition with a deadline, run a service as a process."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable

import httpx
from aiokafka import AIOKafkaConsumer
from google.protobuf.message import Message

from switchboard.contracts import TYPE_HEADER, decode
from switchboard.runtime.settings import ServiceSettings


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


def service_env(settings: ServiceSettings, port: int, **extra: str) -> dict[str, str]:
    """The environment `switchboard up` gives a service (the test's Kafka, Redis and prefixes, an HTTP port on
    loopback), plus the service's own `extra` variables."""
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "REDIS_URL": settings.redis_url,
        "SB_TOPIC_PREFIX": settings.topic_prefix,
        "SB_KEY_PREFIX": settings.key_prefix,
        "SB_HTTP_PORT": str(port),
        "SB_HTTP_HOST": "127.0.0.1",
        **extra,
    }


async def start_service(
    module: str, env: dict[str, str], timeout: float = 60.0
) -> tuple[asyncio.subprocess.Process, str]:
    """Start `python -m <module>` with `env` and wait until its /readyz answers 200 (on SB_INTERNAL_PORT when the
    environment sets one); (process, base URL of the public port).

    The process is killed when it exits or does not become ready in `timeout` seconds.
    """
    base_url = f"http://127.0.0.1:{env['SB_HTTP_PORT']}"
    ready_url = f"http://127.0.0.1:{env.get('SB_INTERNAL_PORT') or env['SB_HTTP_PORT']}/readyz"
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", module, env=env)
    try:
        async with httpx.AsyncClient() as http:

            async def ready() -> bool:
                assert proc.returncode is None, f"{module} exited with {proc.returncode}"
                try:
                    return (await http.get(ready_url)).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(ready, timeout, f"{module} ready")
    except BaseException:
        await stop_service(proc)
        raise
    return proc, base_url


async def stop_service(proc: asyncio.subprocess.Process) -> None:
    """Kill a service process the test did not stop itself, and reap it."""
    if proc.returncode is None:
        proc.kill()
        await proc.wait()
