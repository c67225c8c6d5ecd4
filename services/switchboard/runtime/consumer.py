"""The one batch consumer loop of switchboard.

Reads batches with `getmany`, decodes each record into its protobuf message by the type header, hands each
partition's batch to the service's handler in order, sends what the handler refuses (and what does not decode) to
the DLQ, and commits a partition's offsets only after its batch is handled. On stop it finishes the partition
batch in hand, commits, and returns; what it did not finish is read again by the next owner, so handlers make
redelivered records change nothing twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata
from google.protobuf.message import Message

from switchboard.contracts import TYPE_HEADER, ContractError, decode
from switchboard.runtime.errors import InvalidRecord, TransientError
from switchboard.runtime.kafka import RecordProducer, kafka_client_options, start_client
from switchboard.runtime.logs import get_logger
from switchboard.runtime.metrics import BATCH_SECONDS, READY, RECORDS_CONSUMED, TRANSIENT_RETRIES
from switchboard.runtime.settings import ServiceSettings

log = get_logger(__name__)


@dataclass(frozen=True)
class Delivery:
    """One decoded record."""

    topic: str
    partition: int
    offset: int
    key: str
    message: Message
    timestamp_ms: int
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Rejected:
    """A record the handler will not take, and why; it goes to the DLQ."""

    delivery: Delivery
    reason: str
    error_type: str = "invalid"


Handler = Callable[[Sequence[Delivery]], Awaitable[Sequence[Rejected]]]


def _headers(record: ConsumerRecord[bytes, bytes]) -> dict[str, str]:
    return {k: v.decode("utf-8", "replace") for k, v in (record.headers or ())}


class _Abandoned(Exception):
    """Stop was asked while a batch waited on a transient error: leave it uncommitted for the next owner."""


class BatchConsumer:
    """Consumes topics in one consumer group and feeds a handler partition batch by partition batch."""

    def __init__(
        self,
        settings: ServiceSettings,
        *,
        topics: Sequence[str],
        group_id: str,
        handler: Handler,
        producer: RecordProducer,
    ) -> None:
        self._settings = settings
        self._topics = list(topics)
        self._handler = handler
        self._group_id = group_id
        self._producer = producer
        self._stopping = asyncio.Event()
        self.ready = False
        self._consumer = AIOKafkaConsumer(
            *self._topics,
            **kafka_client_options(settings),
            group_id=group_id,
            client_id=f"{settings.service_name}-{settings.instance_id}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            max_poll_interval_ms=300_000,
        )

    async def start(self) -> None:
        """Join the consumer group (raises BrokerUnavailable, after a clear log line, when no broker takes it)."""
        await start_client(self._consumer, self._settings, f"consumer {self._group_id}")
        self._set_ready(True)

    def stop_intake(self) -> None:
        """Ask the loop to finish the partition batch in hand, commit, and return."""
        self._stopping.set()

    async def stop(self) -> None:
        """Leave the group (after `run` returned)."""
        self._set_ready(False)
        await self._consumer.stop()

    def _set_ready(self, ready: bool) -> None:
        self.ready = ready
        READY.labels(self._settings.service_name).set(1 if ready else 0)

    async def run(self) -> None:
        """Consume until `stop_intake` is called."""
        while not self._stopping.is_set():
            batches = await self._consumer.getmany(
                timeout_ms=self._settings.consumer_poll_ms, max_records=self._settings.consumer_max_records
            )
            for tp, records in batches.items():
                if self._stopping.is_set():
                    # Not handled, not committed: the next owner of the partition reads them again.
                    break
                try:
                    await self._handle_partition(tp, records)
                except _Abandoned:
                    return

    async def _handle_partition(self, tp: TopicPartition, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        started = time.perf_counter()
        service = self._settings.service_name
        RECORDS_CONSUMED.labels(service, tp.topic).inc(len(records))
        decoded: list[Delivery] = []
        for record in records:
            headers = _headers(record)
            try:
                message = decode(headers.get(TYPE_HEADER), record.value)
            except ContractError as exc:
                await self._dead_letter(record, headers, str(exc), "decode_error")
                continue
            key = record.key.decode("utf-8", "replace") if record.key else ""
            decoded.append(Delivery(tp.topic, tp.partition, record.offset, key, message, record.timestamp, headers))
        if decoded:
            for rejected in await self._handle_with_retry(decoded):
                d = rejected.delivery
                original = d.message.SerializeToString()
                await self._producer.dead_letter(
                    source=d.topic,
                    reason=rejected.reason,
                    error_type=rejected.error_type,
                    original=original,
                    key=d.key,
                    tenant_id=getattr(d.message, "tenant_id", ""),
                    partition=d.partition,
                    offset=d.offset,
                    original_headers=d.headers,
                )
        await self._commit(tp, records[-1].offset + 1)
        BATCH_SECONDS.labels(service).observe(time.perf_counter() - started)

    async def _handle_with_retry(self, batch: Sequence[Delivery]) -> Sequence[Rejected]:
        """Run the handler; on a transient error retry with backoff, then keep retrying while not ready."""
        attempt = 0
        while True:
            try:
                rejected = await self._handler(batch)
            except InvalidRecord as exc:
                # The handler refused the whole batch for one reason; the records are dead-lettered one by one.
                return [Rejected(d, exc.reason, exc.error_type) for d in batch]
            except TransientError as exc:
                if self._stopping.is_set():
                    raise _Abandoned from exc
                attempt += 1
                TRANSIENT_RETRIES.labels(self._settings.service_name).inc()
                if attempt > self._settings.transient_retries:
                    self._set_ready(False)
                delay = min(self._settings.retry_backoff_max_s, self._settings.retry_backoff_s * 2 ** (attempt - 1))
                log.warning("transient_error", attempt=attempt, retry_in_s=round(delay, 3), error=repr(exc))
                await asyncio.sleep(delay)
                continue
            if not self.ready:
                self._set_ready(True)
            return rejected

    async def _dead_letter(
        self, record: ConsumerRecord[bytes, bytes], headers: dict[str, str], reason: str, error_type: str
    ) -> None:
        await self._producer.dead_letter(
            source=record.topic,
            reason=reason,
            error_type=error_type,
            original=record.value or b"",
            key=record.key.decode("utf-8", "replace") if record.key else "",
            partition=record.partition,
            offset=record.offset,
            original_headers=headers,
        )

    async def _commit(self, tp: TopicPartition, next_offset: int) -> None:
        attempt = 0
        while True:
            try:
                await self._consumer.commit({tp: OffsetAndMetadata(next_offset, "")})
                return
            except KafkaError as exc:
                attempt += 1
                if attempt > self._settings.transient_retries:
                    # Lost the partition in a rebalance, or the coordinator is gone: the records will be read
                    # again by their next owner, and handlers are idempotent.
                    log.warning("commit_failed", topic=tp.topic, partition=tp.partition, error=repr(exc))
                    return
                await asyncio.sleep(self._settings.retry_backoff_s * attempt)
