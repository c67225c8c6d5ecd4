"""Reading a whole (compacted) topic from its start to its current end, without a consumer group.

Used to rebuild state from a source of truth after Redis lost it (presence reads `sb.presence.v1`). No group means
no committed offsets and no rebalance: each call reads every partition from the beginning. The Kafka user needs
Read and Describe on the topic only (deploy/k8s/components/strimzi/users.yaml).
"""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaConsumer, ConsumerRecord

from switchboard.runtime.errors import BrokerUnavailable
from switchboard.runtime.kafka import kafka_client_options, start_client
from switchboard.runtime.settings import ServiceSettings


async def read_topic_to_end(
    settings: ServiceSettings, topic: str, *, client_id: str, timeout_s: float = 60.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of `topic` from the start of each partition to its end as of the call, in partition order.

    BrokerUnavailable when Kafka cannot be reached or the end is not reached within `timeout_s`."""
    consumer = AIOKafkaConsumer(
        topic,
        **kafka_client_options(settings),
        client_id=client_id,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    await start_client(consumer, settings, client_id)
    try:
        # Without a group, the subscription is assigned every partition once the topic's metadata is known.
        deadline = time.monotonic() + timeout_s
        while not consumer.assignment():
            if time.monotonic() > deadline:
                raise BrokerUnavailable(f"{topic}: no partitions known (does the topic exist?)")
            await asyncio.sleep(0.05)
        partitions = sorted(consumer.assignment())
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: list[ConsumerRecord[bytes, bytes]] = []
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            if time.monotonic() > deadline:
                raise BrokerUnavailable(f"{topic}: not read to its end within {timeout_s:.0f}s")
            batches = await consumer.getmany(*partitions, timeout_ms=500, max_records=5000)
            for tp, batch in batches.items():
                records += [r for r in batch if r.offset < ends[tp]]
        return records
    finally:
        await consumer.stop()
