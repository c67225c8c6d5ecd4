"""sb_consumer_lag and sb_consumer_lag_seconds, exported by the consumer loop itself, against a real broker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import pytest
from prometheus_client import REGISTRY

from switchboard.contracts import Channel, InboundMessage
from switchboard.runtime.consumer import BatchConsumer, Delivery, Rejected
from switchboard.runtime.kafka import RecordProducer
from switchboard.runtime.settings import ServiceSettings
from switchboard.runtime.topics import Topics
from tests.helpers import eventually

pytestmark = pytest.mark.broker

BACKLOG = 30


def _lag(group: str, topic: str, partition: int) -> tuple[float | None, float | None]:
    labels = {"consumer_group": group, "topic": topic, "partition": str(partition)}
    return REGISTRY.get_sample_value("sb_consumer_lag", labels), REGISTRY.get_sample_value(
        "sb_consumer_lag_seconds", labels
    )


async def test_lag_counts_the_backlog_ages_while_a_batch_is_stuck_and_clears_when_caught_up(
    settings: ServiceSettings,
) -> None:
    settings = settings.model_copy(update={"consumer_max_records": 5})
    topic = Topics(settings.topic_prefix).inbound
    group = settings.topic_prefix + "lag"
    producer = RecordProducer(settings)
    await producer.start()
    release = asyncio.Event()
    handled: list[Delivery] = []

    async def handler(batch: Sequence[Delivery]) -> Sequence[Rejected]:
        await release.wait()  # the first batch is stuck until the test lets it go
        handled.extend(batch)
        return []

    consumer = BatchConsumer(settings, topics=[topic], group_id=group, handler=handler, producer=producer)
    await consumer.start()
    task = asyncio.create_task(consumer.run())
    try:
        # One conversation: every record on one partition.
        await producer.send_many(topic, [("c1", _message(i)) for i in range(BACKLOG)])
        partition: int | None = None

        async def stuck_with_backlog() -> bool:
            nonlocal partition
            partition = next(iter(_partitions_with_lag(consumer)), None)
            return partition is not None and _lag(group, topic, partition)[0] == BACKLOG

        await eventually(stuck_with_backlog, 20, "the whole backlog counted while the first batch is stuck")
        assert partition is not None
        first_age = _lag(group, topic, partition)[1]
        await asyncio.sleep(0.6)
        later_age = _lag(group, topic, partition)[1]
        assert first_age is not None and later_age is not None
        # Read at scrape time: a stuck batch's age grows between polls (an alert on it does not wait for a poll).
        assert later_age >= first_age + 0.5
        assert _lag(group, topic, partition)[0] == BACKLOG

        release.set()
        stuck_on = partition

        async def caught_up() -> bool:
            return _lag(group, topic, stuck_on) == (0.0, 0.0) and len(handled) == BACKLOG

        await eventually(caught_up, 20, "lag back to 0 once every record is handled")
        # Every partition the consumer owns has a series (0 when idle), the others none.
        owned = {tp.partition for tp in consumer._consumer.assignment()}
        exported = {p for p in range(3) if _lag(group, topic, p)[0] is not None}
        assert exported == owned
    finally:
        release.set()
        consumer.stop_intake()
        await asyncio.wait_for(task, 10)
        await consumer.stop()
        await producer.stop()
    # A stopped consumer's partitions are no longer reported by this process.
    assert partition is not None and _lag(group, topic, partition) == (None, None)


def _message(i: int) -> InboundMessage:
    return InboundMessage(
        message_id=f"m{i}", tenant_id="shop-a", conversation_id="c1", channel=Channel.CHANNEL_CHAT, text="hi"
    )


def _partitions_with_lag(consumer: BatchConsumer) -> list[int]:
    return sorted(p for (_, p), lag in consumer.lag.items() if lag.records > 0)


async def test_lag_seconds_is_the_age_of_the_oldest_unhandled_record(settings: ServiceSettings) -> None:
    """A backlog written before the consumer starts is as old as its first record when the consumer sees it."""
    topic = Topics(settings.topic_prefix).inbound
    group = settings.topic_prefix + "age"
    producer = RecordProducer(settings)
    await producer.start()
    release = asyncio.Event()

    async def handler(batch: Sequence[Delivery]) -> Sequence[Rejected]:
        await release.wait()
        return []

    await producer.send_many(topic, [("c1", _message(0))])
    written = time.time()
    await asyncio.sleep(1.0)
    consumer = BatchConsumer(settings, topics=[topic], group_id=group, handler=handler, producer=producer)
    await consumer.start()
    task = asyncio.create_task(consumer.run())
    try:

        async def seen() -> bool:
            return any(lag.records == 1 for lag in consumer.lag.values())

        await eventually(seen, 20, "the record polled")
        ((_, partition),) = [k for k, lag in consumer.lag.items() if lag.records == 1]
        age = _lag(group, topic, partition)[1]
        assert age is not None
        assert time.time() - written - 0.5 <= age <= time.time() - written + 0.5
    finally:
        release.set()
        consumer.stop_intake()
        await asyncio.wait_for(task, 10)
        await consumer.stop()
        await producer.stop()
