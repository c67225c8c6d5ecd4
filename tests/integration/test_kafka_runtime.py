"""The producer wrapper and consumer loop against a real broker."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from switchboard.contracts import Channel, DeadLetter, InboundMessage, RoutingEvent
from switchboard.runtime.consumer import BatchConsumer, Delivery, Rejected
from switchboard.runtime.errors import TransientError
from switchboard.runtime.kafka import RecordProducer, channel_header
from switchboard.runtime.settings import ServiceSettings
from switchboard.runtime.topics import Topics
from tests.conftest import TEST_PARTITIONS
from tests.helpers import eventually, read_topic

pytestmark = pytest.mark.broker


def _message(i: int, conversation: str = "c1") -> InboundMessage:
    return InboundMessage(
        message_id=f"m{i}",
        tenant_id="shop-a",
        conversation_id=conversation,
        channel=Channel.CHANNEL_CHAT,
        text=f"第{i}条 message {i}",
    )


async def _run_consumer(settings: ServiceSettings, handler, until, channels=None) -> None:  # type: ignore[no-untyped-def]
    producer = RecordProducer(settings)
    await producer.start()
    consumer = BatchConsumer(
        settings,
        topics=[Topics(settings.topic_prefix).inbound],
        group_id=settings.topic_prefix + "g",
        handler=handler,
        producer=producer,
        channels=channels,
    )
    await consumer.start()
    task = asyncio.create_task(consumer.run())
    try:
        await asyncio.wait_for(until.wait(), 30)
    finally:
        consumer.stop_intake()
        await asyncio.wait_for(task, 10)
        await consumer.stop()
        await producer.stop()


async def test_protobuf_records_round_trip_through_the_broker_in_key_order(settings: ServiceSettings) -> None:
    producer = RecordProducer(settings)
    await producer.start()
    topics = Topics(settings.topic_prefix)
    try:
        await producer.send_many(topics.inbound, [(f"c{i % 3}", _message(i, f"c{i % 3}")) for i in range(30)])
    finally:
        await producer.stop()
    seen: list[Delivery] = []
    done = asyncio.Event()

    async def handler(batch: Sequence[Delivery]) -> Sequence[Rejected]:
        seen.extend(batch)
        if len(seen) >= 30:
            done.set()
        return []

    await _run_consumer(settings, handler, done)
    assert len(seen) == 30
    for conversation in ("c0", "c1", "c2"):
        ids = [int(d.message.message_id[1:]) for d in seen if d.key == conversation]  # type: ignore[attr-defined]
        assert ids == sorted(ids) and len(ids) == 10
    assert all(isinstance(d.message, InboundMessage) for d in seen)


async def test_a_consumer_of_one_channel_gets_only_its_records_and_those_without_a_channel_header(
    settings: ServiceSettings,
) -> None:
    topics = Topics(settings.topic_prefix)
    mail = _message(1)
    mail.channel = Channel.CHANNEL_EMAIL
    producer = RecordProducer(settings)
    await producer.start()
    try:
        await producer.send_many(topics.inbound, [("c1", _message(0)), ("c1", mail), ("c1", _message(2))])
    finally:
        await producer.stop()
    raw = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await raw.start()
    try:  # a record from a producer that sets no channel header: decoded and handled as before
        headers = [("sb-type", b"switchboard.v1.InboundMessage")]
        await raw.send_and_wait(topics.inbound, _message(3).SerializeToString(), key=b"c1", headers=headers)
    finally:
        await raw.stop()
    assert channel_header(mail) == [("sb-channel", b"CHANNEL_EMAIL")]
    assert channel_header(DeadLetter()) == []  # a record type without a channel carries no header
    seen: list[str] = []
    done = asyncio.Event()

    async def handler(batch: Sequence[Delivery]) -> Sequence[Rejected]:
        seen.extend(d.message.message_id for d in batch)  # type: ignore[attr-defined]
        if "m3" in seen:
            done.set()
        return []

    await _run_consumer(settings, handler, done, channels={"CHANNEL_EMAIL"})
    assert seen == ["m1", "m3"]


async def test_undecodable_and_refused_records_go_to_the_dlq_and_the_consumer_goes_on(
    settings: ServiceSettings,
) -> None:
    topics = Topics(settings.topic_prefix)
    raw = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await raw.start()
    try:
        await raw.send_and_wait(
            topics.inbound,
            b"\xff\x00garbage",
            key=b"c1",
            headers=[("sb-type", b"switchboard.v1.InboundMessage")],
        )
        await raw.send_and_wait(topics.inbound, b"no header at all", key=b"c1")
    finally:
        await raw.stop()
    producer = RecordProducer(settings)
    await producer.start()
    try:
        await producer.send(topics.inbound, "c1", _message(1))
        await producer.send(topics.inbound, "c1", InboundMessage(message_id="m2", conversation_id="c1"))
        await producer.send(topics.inbound, "c1", _message(3))
    finally:
        await producer.stop()
    handled: list[str] = []
    done = asyncio.Event()

    async def handler(batch: Sequence[Delivery]) -> Sequence[Rejected]:
        rejected = []
        for d in batch:
            assert isinstance(d.message, InboundMessage)
            if not d.message.tenant_id:
                rejected.append(Rejected(d, "record has no tenant_id", "invalid"))
            else:
                handled.append(d.message.message_id)
        if "m3" in handled:
            done.set()
        return rejected

    await _run_consumer(settings, handler, done)
    assert handled == ["m1", "m3"]
    letters = [m for _, m in await read_topic(settings.kafka_bootstrap, topics.dlq, 3)]
    assert all(isinstance(m, DeadLetter) for m in letters)
    by_type = sorted((m.error_type, m.reason) for m in letters)  # type: ignore[attr-defined]
    assert [t for t, _ in by_type] == ["decode_error", "decode_error", "invalid"]
    assert any("missing sb-type" in r for _, r in by_type)
    garbage = next(m for m in letters if m.original == b"\xff\x00garbage")  # type: ignore[attr-defined]
    assert garbage.source == topics.inbound and garbage.offset == 0  # type: ignore[attr-defined]


async def test_transient_errors_are_retried_not_skipped(settings: ServiceSettings) -> None:
    producer = RecordProducer(settings)
    await producer.start()
    try:
        await producer.send(Topics(settings.topic_prefix).inbound, "c1", _message(1))
    finally:
        await producer.stop()
    attempts = 0
    done = asyncio.Event()

    async def handler(batch: Sequence[Delivery]) -> Sequence[Rejected]:
        nonlocal attempts
        attempts += 1
        if attempts < 4:
            raise TransientError("redis unreachable")
        done.set()
        return []

    await _run_consumer(settings, handler, done)
    assert attempts == 4


async def test_idempotent_producer_and_transactions_work_against_the_pinned_broker(
    settings: ServiceSettings,
) -> None:
    topic = Topics(settings.topic_prefix).routing
    tx = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        transactional_id=settings.topic_prefix + "tx",
        enable_idempotence=True,
        acks="all",
    )
    await tx.start()
    try:
        headers = [("sb-type", b"switchboard.v1.RoutingEvent")]
        await tx.begin_transaction()
        await tx.send(topic, RoutingEvent(event_id="aborted").SerializeToString(), key=b"k", headers=headers)
        await tx.abort_transaction()
        await tx.begin_transaction()
        await tx.send(topic, RoutingEvent(event_id="committed").SerializeToString(), key=b"k", headers=headers)
        await tx.commit_transaction()
    finally:
        await tx.stop()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    try:
        events: list[str] = []
        async with asyncio.timeout(20):
            while not events:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    events += [RoutingEvent.FromString(r.value).event_id for r in records]
    finally:
        await consumer.stop()
    assert events == ["committed"]


async def _group_committed(settings: ServiceSettings, group: str) -> int:
    topic = Topics(settings.topic_prefix).inbound
    reader = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=group, enable_auto_commit=False)
    await reader.start()
    try:
        return sum([(await reader.committed(TopicPartition(topic, p))) or 0 for p in range(TEST_PARTITIONS)])
    finally:
        await reader.stop()


async def test_offsets_are_committed_at_the_interval_on_revocation_and_on_stop_so_a_rebalance_repeats_nothing(
    settings: ServiceSettings,
) -> None:
    """Commits are spaced by SB_CONSUMER_COMMIT_INTERVAL_MS (here longer than the test); partitions a rebalance
    takes away are committed first, so the replica that gets them does not handle their records again."""
    settings = settings.model_copy(update={"consumer_commit_interval_ms": 120_000})
    topics, group = Topics(settings.topic_prefix), settings.topic_prefix + "interval"
    producer = RecordProducer(settings)
    await producer.start()
    handled: dict[str, list[str]] = {"a": [], "b": []}
    consumers: list[BatchConsumer] = []
    tasks: list[asyncio.Task[None]] = []

    async def start(name: str) -> BatchConsumer:
        async def handler(batch: Sequence[Delivery]) -> Sequence[Rejected]:
            handled[name].extend(d.message.message_id for d in batch)  # type: ignore[attr-defined]
            return []

        consumer = BatchConsumer(settings, topics=[topics.inbound], group_id=group, handler=handler, producer=producer)
        await consumer.start()
        consumers.append(consumer)
        tasks.append(asyncio.create_task(consumer.run()))
        return consumer

    try:
        await producer.send_many(topics.inbound, [(f"c{i}", _message(i, f"c{i}")) for i in range(20)])
        await start("a")
        await eventually(lambda: _true(len(handled["a"]) == 20), 30, "a handled the first 20")
        await asyncio.sleep(1.0)  # several polls later: nothing is due yet
        assert await _group_committed(settings, group) == 0
        second = await start("b")
        await eventually(lambda: _true(bool(second._consumer.assignment())), 30, "b got partitions")
        await producer.send_many(topics.inbound, [(f"c{i}", _message(i, f"c{i}")) for i in range(20, 40)])
        await eventually(lambda: _true(len(handled["a"]) + len(handled["b"]) >= 40), 30, "all 40 handled")
        await asyncio.sleep(1.0)
        everything = handled["a"] + handled["b"]
        assert sorted(everything) == sorted(f"m{i}" for i in range(40)), "nothing handled twice, nothing missed"
        assert handled["b"] and all(int(m[1:]) >= 20 for m in handled["b"])
    finally:
        for consumer in consumers:
            consumer.stop_intake()
        await asyncio.gather(*tasks)
        for consumer in consumers:
            await consumer.stop()
        await producer.stop()
    assert await _group_committed(settings, group) == 40, "stopping committed what was handled"


async def test_a_consumer_that_commits_every_poll_hands_over_a_poll_only_once_the_one_before_is_committed(
    settings: ServiceSettings,
) -> None:
    """A commit runs while the next poll is fetched, but is done before that poll is handled: a handler (the router's
    rebuild reads the group's committed offsets from inside one) always finds committed = handled so far."""
    settings = settings.model_copy(update={"consumer_max_records": 5})
    topics, group = Topics(settings.topic_prefix), settings.topic_prefix + "every-poll"
    producer = RecordProducer(settings)
    await producer.start()
    handled = 0
    seen: list[tuple[int, int]] = []

    async def handler(batch: Sequence[Delivery]) -> Sequence[Rejected]:
        nonlocal handled
        seen.append((await _group_committed(settings, group), handled))
        handled += len(batch)
        return []

    consumer = BatchConsumer(
        settings, topics=[topics.inbound], group_id=group, handler=handler, producer=producer, commit_interval_ms=0
    )
    try:
        await producer.send_many(topics.inbound, [(f"c{i}", _message(i, f"c{i}")) for i in range(15)])
        await consumer.start()
        task = asyncio.create_task(consumer.run())
        await eventually(lambda: _true(handled == 15), 30, "all 15 handled")
        consumer.stop_intake()
        await task
    finally:
        await consumer.stop()
        await producer.stop()
    assert len(seen) >= 3, "polls of at most 5 records"
    assert all(committed == before for committed, before in seen), seen


async def _true(value: bool) -> bool:
    return value
