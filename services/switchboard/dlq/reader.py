"""Read the DLQ topic from its start (or from a time) to its current end, without a consumer group.

The reader assigns itself every partition and commits nothing, so it moves no service's offsets and joins no
group; it reads committed records only (a re-drive's mark is written in a transaction).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from switchboard.contracts import TYPE_HEADER, ContractError, DeadLetter, DeadLetterRedrive, decode
from switchboard.dlq.entries import DlqRecord, attach_redrives
from switchboard.runtime.errors import BrokerUnavailable
from switchboard.runtime.kafka import stop_client
from switchboard.runtime.settings import ServiceSettings
from switchboard.runtime.topic_reader import open_reader, records_between
from switchboard.runtime.topics import Topics


class DlqUnavailable(RuntimeError):
    """The DLQ cannot be read: its topic is not there, or it was not read to its end in time."""


@dataclass
class DlqScan:
    """What the DLQ topic holds: DeadLetters (with their re-drive marks attached) and how many records were
    neither a DeadLetter nor a mark."""

    topic: str
    records: list[DlqRecord] = field(default_factory=list)
    foreign: int = 0

    def find(self, dead_letter_id: str) -> DlqRecord | None:
        """The record with this id, if the scan saw it."""
        return next((r for r in self.records if r.id == dead_letter_id), None)


@dataclass(frozen=True)
class Scope:
    """Which DeadLetters a scan holds on to: those `keep` takes (all when None), with or without their original
    bytes (a listing prints no payload; a DLQ after a spike may hold many large ones)."""

    keep: Callable[[DlqRecord], bool] | None = None
    payloads: bool = True


async def read_dlq(
    settings: ServiceSettings, since: datetime | None = None, timeout_s: float = 120.0, scope: Scope = Scope()
) -> DlqScan:
    """The DeadLetters in `scope` on the deployment's DLQ topic (from `since`, when given) up to its end at the time
    of call, with every re-drive mark attached."""
    topic = Topics(settings.topic_prefix).dlq
    # The partitions assigned by hand, without a group: no coordinator involved, and a missing topic is said at once.
    consumer = await open_reader(settings, topic, client_id="switchboard-dlq")
    if consumer is None:
        raise DlqUnavailable(_no_topic(topic))
    try:
        return await _read_to_end(consumer, topic, await _starts(consumer, since), timeout_s, scope)
    finally:
        await stop_client(consumer, "dlq reader")


async def _starts(consumer: AIOKafkaConsumer, since: datetime | None) -> dict[TopicPartition, int]:
    """Where each partition is read from: its start, or the first record at or after `since` (its end when none)."""
    partitions = sorted(consumer.assignment())
    if since is None:
        return dict(await consumer.beginning_offsets(partitions))
    # A DeadLetter's record timestamp is its producer's send time, within moments of its `at`; a re-drive's mark is
    # always later than its DeadLetter, so reading from `since` still finds the marks of what it lists.
    found = await consumer.offsets_for_times({tp: int(since.timestamp() * 1000) for tp in partitions})
    ends = await consumer.end_offsets(partitions)
    return {tp: at.offset if (at := found.get(tp)) is not None else ends[tp] for tp in partitions}


def _no_topic(topic: str) -> str:
    return (
        f"no topic {topic} on this cluster, or this Kafka user may not describe it "
        "(is SB_TOPIC_PREFIX right? docs/dlq.md, Kafka permissions)"
    )


async def _read_to_end(
    consumer: AIOKafkaConsumer, topic: str, starts: dict[TopicPartition, int], timeout_s: float, scope: Scope
) -> DlqScan:
    scan = DlqScan(topic)
    marks: list[DeadLetterRedrive] = []
    ends = await consumer.end_offsets(list(starts))
    try:
        async for record in records_between(consumer, starts, ends, timeout_s=timeout_s):
            _take(record, scan, marks, scope)
    except BrokerUnavailable as exc:
        raise DlqUnavailable(f"{topic}: not read to its end within {timeout_s:.0f}s") from exc
    scan.records = attach_redrives(scan.records, marks)
    return scan


def _take(record: ConsumerRecord[bytes, bytes], scan: DlqScan, marks: list[DeadLetterRedrive], scope: Scope) -> None:
    headers = {k: v.decode("utf-8", "replace") for k, v in (record.headers or ())}
    try:
        message = decode(headers.get(TYPE_HEADER), record.value)
    except ContractError:
        scan.foreign += 1
        return
    if isinstance(message, DeadLetter):
        key = record.key.decode("utf-8", "replace") if record.key else ""
        found = DlqRecord(message, record.partition, record.offset, key)
        if scope.keep is not None and not scope.keep(found):
            return
        if not scope.payloads:
            message.ClearField("original")
        scan.records.append(found)
    elif isinstance(message, DeadLetterRedrive):
        marks.append(message)
    else:
        scan.foreign += 1
