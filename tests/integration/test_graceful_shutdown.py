"""SIGTERM mid-stream: the service commits what it finished, exits 0, and a restart does the rest exactly once."""

from __future__ import annotations

import asyncio
import signal

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from switchboard.contracts import Channel, InboundMessage
from switchboard.runtime.kafka import RecordProducer
from switchboard.runtime.settings import ServiceSettings
from switchboard.runtime.topics import Topics
from switchboard_tools.stack.procs import free_port
from tests.conftest import TEST_PARTITIONS
from tests.helpers import eventually, service_env, start_service

pytestmark = pytest.mark.broker

TOTAL = 300


async def _start_worker(settings: ServiceSettings) -> tuple[asyncio.subprocess.Process, str]:
    env = service_env(
        settings,
        free_port(),
        SB_CONSUMER_MAX_RECORDS="20",
        SB_SERVICE_NAME="sample-worker",
        SB_SHUTDOWN_GRACE_S="10",
    )
    return await start_service("tests.integration.sample_worker", env)


async def _committed(settings: ServiceSettings) -> int:
    topic = Topics(settings.topic_prefix).inbound
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=f"{settings.topic_prefix}worker",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        offsets = [await consumer.committed(TopicPartition(topic, p)) for p in range(TEST_PARTITIONS)]
        return sum(o or 0 for o in offsets)
    finally:
        await consumer.stop()


async def test_sigterm_mid_batch_commits_what_it_finished_and_restart_finishes_exactly_once(
    settings: ServiceSettings,
    redis,  # type: ignore[no-untyped-def]
) -> None:
    producer = RecordProducer(settings)
    await producer.start()
    try:
        await producer.send_many(
            Topics(settings.topic_prefix).inbound,
            [
                (
                    f"c{i % 7}",
                    InboundMessage(
                        message_id=f"m{i}",
                        tenant_id="shop-a",
                        conversation_id=f"c{i % 7}",
                        channel=Channel.CHANNEL_CHAT,
                        text="hi",
                    ),
                )
                for i in range(TOTAL)
            ],
        )
    finally:
        await producer.stop()
    effects = f"{settings.key_prefix}:effects"
    worker, base = await _start_worker(settings)
    async with httpx.AsyncClient(base_url=base) as http:
        metrics = (await http.get("/metrics")).text
        assert "sb_records_consumed_total" in metrics
        assert (await http.get("/healthz")).json()["status"] == "alive"

    async def some_done() -> bool:
        return int(await redis.llen(effects)) >= 40

    await eventually(some_done, 60, "first effects")
    worker.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(worker.wait(), 30) == 0
    done_at_stop = int(await redis.llen(effects))
    assert 40 <= done_at_stop < TOTAL, "the stop landed mid-stream"
    assert await _committed(settings) == done_at_stop, "committed exactly what was finished"

    worker, _ = await _start_worker(settings)

    async def all_done() -> bool:
        return int(await redis.llen(effects)) >= TOTAL

    await eventually(all_done, 90, "all effects")
    worker.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(worker.wait(), 30) == 0
    applied = [m.decode() for m in await redis.lrange(effects, 0, -1)]
    assert sorted(applied) == sorted(f"m{i}" for i in range(TOTAL))
    assert int(await redis.get(f"{settings.key_prefix}:duplicates") or 0) == 0
    assert await _committed(settings) == TOTAL
