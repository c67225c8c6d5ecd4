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
from aiokafka.errors import IllegalStateError, KafkaError
from aiokafka.structs import OffsetAndMetadata
from google.protobuf.message import Message

from switchboard.contracts import TYPE_HEADER, ContractError, decode
from switchboard.runtime.errors import InvalidRecord, TransientError
from switchboard.runtime.kafka import RecordProducer, kafka_client_options, start_client
from switchboard.runtime.logs import get_logger
from switchboard.runtime.metrics import (
    BATCH_SECONDS,
    CONSUMER_LAG,
    RECORDS_CONSUMED,
    TRANSIENT_RETRIES,
    PartitionLag,
)
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
        self._producer = producer
        self._stopping = asyncio.Event()
        self.ready = False
        self.group_id = group_id
        # This replica's partitions and how far behind it is on each (sb_consumer_lag*, read at scrape time).
        self.lag: dict[tuple[str, int], PartitionLag] = {}
        self._lag_refreshed_ms = int(time.time() * 1000)
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
        await start_client(self._consumer, self._settings, f"consumer {self.group_id}")
        self._set_ready(True)
        CONSUMER_LAG.track(self)

    def stop_intake(self) -> None:
        """Ask the loop to finish the partition batch in hand, commit, and return."""
        self._stopping.set()

    async def stop(self) -> None:
        """Leave the group (after `run` returned)."""
        self._set_ready(False)
        CONSUMER_LAG.untrack(self)
        self.lag.clear()
        await self._consumer.stop()

    def _set_ready(self, ready: bool) -> None:
        # sb_ready follows the service's /readyz, which reads this through its ready check.
        self.ready = ready

    async def run(self) -> None:
        """Consume until `stop_intake` is called."""
        while not self._stopping.is_set():
            batches = await self._consumer.getmany(
                timeout_ms=self._settings.consumer_poll_ms, max_records=self._settings.consumer_max_records
            )
            await self._refresh_lag(batches)
            for tp, records in batches.items():
                if self._stopping.is_set():
                    # Not handled, not committed: the next owner of the partition reads them again.
                    break
                try:
                    await self._handle_partition(tp, records)
                except _Abandoned:
                    return
                self._handled(tp, records[-1])

    async def _refresh_lag(self, in_hand: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> None:
        """After a poll: how far behind each owned partition is; the records just polled count as not handled."""
        owned = self._consumer.assignment()
        for key in [k for k in self.lag if TopicPartition(*k) not in owned]:
            del self.lag[key]  # revoked: its new owner reports it
        previous_ms, self._lag_refreshed_ms = self._lag_refreshed_ms, int(time.time() * 1000)
        for tp in owned:
            highwater = self._consumer.highwater(tp)
            if highwater is None:
                continue  # not fetched yet: no figure rather than a wrong one
            records = in_hand.get(tp)
            position = records[0].offset if records else await self._position(tp)
            if position is None:
                continue
            lag = self.lag.setdefault((tp.topic, tp.partition), PartitionLag(records=0, oldest_at_ms=None))
            lag.records = max(0, highwater - position)
            if lag.records == 0:
                lag.oldest_at_ms = None
            elif records:
                lag.oldest_at_ms = records[0].timestamp  # exact: the oldest unhandled record is in hand
            elif lag.oldest_at_ms is None:
                # Behind with no record in hand: they came after the last refresh, which found it caught up.
                lag.oldest_at_ms = previous_ms

    def _handled(self, tp: TopicPartition, last: ConsumerRecord[bytes, bytes]) -> None:
        """A partition batch is handled (up to `last`): what is left behind it until the next poll."""
        lag = self.lag.get((tp.topic, tp.partition))
        if lag is None or tp not in self._consumer.assignment():
            return
        highwater = self._consumer.highwater(tp)
        lag.records = max(0, (highwater or 0) - (last.offset + 1))
        # The oldest record left came after `last`: its age is at most last's until the next poll says.
        lag.oldest_at_ms = last.timestamp if lag.records else None

    async def _position(self, tp: TopicPartition) -> int | None:
        """The group's next offset on `tp`, or None while it has none (being reset, or revoked meanwhile)."""
        try:
            async with asyncio.timeout(0.05):
                return int(await self._consumer.position(tp))
        except (TimeoutError, IllegalStateError):
            return None

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
                    bounded=False,
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
            bounded=False,
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
