"""Reading a whole (compacted) topic from its start to its current end, without a consumer group.

Used to rebuild state from a source of truth after Redis lost it (presence reads `sb.presence.v1`). No group means
no committed offsets and no rebalance: each call reads every partition from the beginning. The Kafka user needs
Read and Describe on the topic only (deploy/k8s/components/strimzi/users.yaml).

`open_reader` is how every reader without a group starts (this one, the router's rebuild, `switchboard dlq`): it
asks the cluster for the topic first. A consumer *subscribed* to a topic the cluster does not have waits in
`start()` for the topic's metadata for its whole request timeout (40 s) before it fails; this one says at once.

`records_between` is how each of them reads: it places every partition at an offset it asked for (`seek`), so it
never waits on the fetcher's position reset (`seek_to_beginning` does, up to the request timeout), and it does not
fetch a partition with nothing in its range. `stop_client` ends each reader, bounded (a TLS broker may leave the
close unanswered).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from switchboard.runtime.errors import BrokerUnavailable
from switchboard.runtime.kafka import kafka_client_options, start_client, stop_client
from switchboard.runtime.settings import ServiceSettings


async def open_reader(
    settings: ServiceSettings, topic: str, *, client_id: str, timeout_s: float = 30.0
) -> AIOKafkaConsumer | None:
    """A started consumer without a group (it commits nothing) assigned every partition of `topic`, or None when
    the cluster has no such topic.

    BrokerUnavailable when Kafka cannot be reached, or the partitions are not known within `timeout_s`."""
    consumer = AIOKafkaConsumer(
        **kafka_client_options(settings),
        client_id=client_id,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    await start_client(consumer, settings, client_id)
    try:
        if topic not in await consumer.topics():
            await stop_client(consumer, client_id)
            return None
        # Without a group, the subscription is assigned every partition once the topic's metadata is in.
        consumer.subscribe([topic])
        deadline = time.monotonic() + timeout_s
        while not consumer.assignment():
            if time.monotonic() > deadline:
                raise BrokerUnavailable(f"{topic}: its partitions not known within {timeout_s:.0f}s")
            await asyncio.sleep(0.02)
    except BaseException:
        await stop_client(consumer, client_id)
        raise
    return consumer


async def records_between(
    consumer: AIOKafkaConsumer,
    starts: Mapping[TopicPartition, int],
    stops: Mapping[TopicPartition, int],
    *,
    timeout_s: float,
) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
    """Every record of each partition of `stops` from its offset in `starts` up to (not including) its stop, in
    offset order per partition. The consumer must have those partitions (`open_reader`).

    BrokerUnavailable when the stops are not all reached within `timeout_s`."""
    pending = {tp for tp, stop in stops.items() if starts[tp] < stop}
    for tp in pending:
        consumer.seek(tp, starts[tp])
    deadline = time.monotonic() + timeout_s
    while pending:
        if time.monotonic() > deadline:
            raise BrokerUnavailable(f"{sorted(pending)}: not read to the end within {timeout_s:.0f}s")
        batches = await consumer.getmany(*pending, timeout_ms=500, max_records=5000)
        for tp, batch in batches.items():
            for record in batch:
                if record.offset < stops[tp]:
                    yield record
        for tp in list(pending):
            if await consumer.position(tp) >= stops[tp]:
                pending.discard(tp)


async def read_topic_to_end(
    settings: ServiceSettings, topic: str, *, client_id: str, timeout_s: float = 60.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of `topic` from the start of each partition to its end as of the call, in partition order.

    BrokerUnavailable when Kafka cannot be reached or the end is not reached within `timeout_s`."""
    consumer = await open_reader(settings, topic, client_id=client_id)
    if consumer is None:
        raise BrokerUnavailable(f"{topic}: no such topic on this cluster")
    try:
        partitions = sorted(consumer.assignment())
        starts = await consumer.beginning_offsets(partitions)
        ends = await consumer.end_offsets(partitions)
        return [r async for r in records_between(consumer, starts, ends, timeout_s=timeout_s)]
    finally:
        await stop_client(consumer, client_id)
