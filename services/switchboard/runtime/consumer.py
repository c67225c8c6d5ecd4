"""The one batch consumer loop of switchboard.

Reads batches with `getmany`, decodes each record into its protobuf message by the type header, hands the whole
poll to the service's handler in one call (each partition's records in offset order: order is kept per partition,
which is all Kafka orders), and sends what the handler refuses (and what does not decode) to the DLQ. One call per
poll means one round of Redis scripts and one wait for produce acks per poll, not one per partition. Handled offsets
are committed in one request at most every `SB_CONSUMER_COMMIT_INTERVAL_MS` (200), or after every poll for a
consumer that asks for 0 (the router's conversations: its rebuild after a Redis loss relies on committed = handled),
then also when a rebalance takes partitions away, and on stop. A commit runs while the next poll is fetched, and is
done before that poll is handled (so the router's rebuild, inside its handler, finds committed = handled), before a
rebalance's commit and before the stop's. On stop it finishes the poll in hand, commits, and returns; what it did not
commit (a crash) is read again by the next owner, so handlers make redelivered records change nothing twice.

Failover: the group's session (`SB_KAFKA_SESSION_TIMEOUT_MS`, heartbeats every `SB_KAFKA_HEARTBEAT_INTERVAL_MS`) is
how long a replica that died without leaving (SIGKILL) keeps its partitions; static membership
(`SB_KAFKA_GROUP_INSTANCE_ID`) is optional. aiokafka rebalances eagerly (no cooperative protocol).

Fencing: a process that stood still for longer than the session (SIGSTOP, a paused VM, a stalled loop) has been
dropped from the group, and another replica owns its partitions now; it may still hold records it fetched before.
It does not handle them: it notices the stall, drops what it holds, seeks back, and handles nothing until the group
has assigned it partitions again (or, if the group did keep it, one more session has passed).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from aiokafka.structs import OffsetAndMetadata
from google.protobuf.message import Message

from switchboard.contracts import CHANNEL_HEADER, TYPE_HEADER, ContractError, decode
from switchboard.runtime.errors import InvalidRecord, TransientError
from switchboard.runtime.kafka import RecordProducer, kafka_client_options, start_client, stop_client
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
    """Consumes topics in one consumer group and feeds a handler poll by poll."""

    def __init__(
        self,
        settings: ServiceSettings,
        *,
        topics: Sequence[str],
        group_id: str,
        handler: Handler,
        producer: RecordProducer,
        channels: Collection[str] | None = None,
        commit_interval_ms: int | None = None,
    ) -> None:
        self._settings = settings
        self._topics = list(topics)
        # The channels whose records this consumer handles (Channel names); a record whose `sb-channel` header
        # names another is skipped undecoded and committed with the rest. None: every record.
        self._channels = frozenset(channels) if channels is not None else None
        self._handler = handler
        self._producer = producer
        self._stopping = asyncio.Event()
        self.ready = False
        self.group_id = group_id
        # This replica's partitions and how far behind it is on each (sb_consumer_lag*, read at scrape time).
        self.lag: dict[tuple[str, int], PartitionLag] = {}
        # Handled this poll, not committed yet: the next offset of each partition.
        self._uncommitted: dict[TopicPartition, int] = {}
        # The commit in flight while the next poll is fetched (at most one).
        self._committing: asyncio.Task[None] | None = None
        self._lag_refreshed_ms = int(time.time() * 1000)
        self._consumer = AIOKafkaConsumer(
            **kafka_client_options(settings),
            group_id=group_id,
            group_instance_id=settings.kafka_group_instance_id or None,
            client_id=f"{settings.service_name}-{settings.instance_id}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            max_poll_interval_ms=300_000,
            session_timeout_ms=settings.kafka_session_timeout_ms,
            heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms,
            fetch_min_bytes=settings.kafka_fetch_min_bytes,
            fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
        )
        # How often handled offsets are committed: SB_CONSUMER_COMMIT_INTERVAL_MS unless the consumer says (0: after
        # every poll).
        interval_ms = settings.consumer_commit_interval_ms if commit_interval_ms is None else commit_interval_ms
        self._commit_interval_s = interval_ms / 1000
        self._committed_at = time.monotonic()
        self._fence = _StallFence(
            settings.kafka_session_timeout_ms / 1000,
            settings.kafka_heartbeat_interval_ms / 1000,
            revoked=self._commit_revoked,
        )
        self._consumer.subscribe(self._topics, listener=self._fence)

    async def start(self) -> None:
        """Join the consumer group (raises BrokerUnavailable, after a clear log line, when no broker takes it)."""
        await start_client(self._consumer, self._settings, f"consumer {self.group_id}")
        self._fence.start()
        self._set_ready(True)
        CONSUMER_LAG.track(self)

    def stop_intake(self) -> None:
        """Ask the loop to finish the poll in hand, commit, and return."""
        self._stopping.set()

    async def stop(self) -> None:
        """Leave the group (after `run` returned)."""
        self._set_ready(False)
        CONSUMER_LAG.untrack(self)
        self.lag.clear()
        await self._fence.stop()
        await stop_client(self._consumer, "consumer")

    def _set_ready(self, ready: bool) -> None:
        # sb_ready follows the service's /readyz, which reads this through its ready check.
        self.ready = ready

    async def run(self) -> None:
        """Consume until `stop_intake` is called; what was handled is committed before it returns."""
        try:
            await self._consume()
        finally:
            await self._commit_settled()
            await self._commit_handled()

    async def _consume(self) -> None:
        while not self._stopping.is_set():
            batches = await self._consumer.getmany(
                timeout_ms=self._settings.consumer_poll_ms, max_records=self._settings.consumer_max_records
            )
            await self._refresh_lag(batches)
            if not batches or self._stopping.is_set():
                # Not handled, not committed: the next owner of the partitions reads them again. What was handled
                # before is committed once due.
                if self._uncommitted and self._commit_due():
                    await self._commit_in_background()
                continue
            if self._fence.fenced():
                self._drop(batches)
                await asyncio.sleep(self._settings.consumer_poll_ms / 1000)
                continue
            # A partition revoked by a rebalance since the poll is left out: its commit would fail, and its next
            # owner (maybe this replica again) reads these records anyway.
            owned = self._consumer.assignment()
            polled = [(tp, records) for tp, records in batches.items() if tp in owned and records]
            await self._commit_settled()
            try:
                await self._handle_poll(polled)
            except _Abandoned:
                return
            for tp, records in polled:
                self._uncommitted[tp] = records[-1].offset + 1
                self._handled(tp, records[-1])
            if self._fence.assigned_at is not None:
                log.info(
                    "first_poll_handled",
                    group=self.group_id,
                    after_assignment_s=round(time.monotonic() - self._fence.assigned_at, 3),
                    records=sum(len(r) for _, r in polled),
                )
                self._fence.assigned_at = None
            if self._commit_due():
                await self._commit_in_background()

    def _commit_due(self) -> bool:
        return time.monotonic() - self._committed_at >= self._commit_interval_s

    async def _commit_revoked(self, revoked: Collection[TopicPartition]) -> None:
        """A rebalance takes partitions away: commit what was handled of them while they are still this
        replica's, so their next owner does not read it again."""
        await self._commit_settled()
        if any(tp in self._uncommitted for tp in revoked):
            await self._commit_handled()

    def _drop(self, batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> None:
        """Fenced: hand none of these records to the handler; seek back so they are read again if the group kept
        this replica (a partition it lost is simply no longer fetched)."""
        owned = self._consumer.assignment()
        for tp, records in batches.items():
            if records and tp in owned:
                self._consumer.seek(tp, records[0].offset)
        if batches:
            log.warning(
                "consumer_fenced_records_dropped",
                group=self.group_id,
                records=sum(len(r) for r in batches.values()),
                partitions=[f"{tp.topic}/{tp.partition}" for tp in batches],
            )

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

    async def _handle_poll(self, polled: list[tuple[TopicPartition, list[ConsumerRecord[bytes, bytes]]]]) -> None:
        """Decode a poll's records and hand them to the handler in one call: each partition's in offset order,
        partitions one after another (order is only kept within a partition; across partitions the handlers go by
        what the records say, e.g. the router by each message's arrival)."""
        started = time.perf_counter()
        service = self._settings.service_name
        decoded: list[Delivery] = []
        for tp, records in polled:
            RECORDS_CONSUMED.labels(service, tp.topic).inc(len(records))
            for record in records:
                headers = _headers(record)
                channel = headers.get(CHANNEL_HEADER)
                if self._channels is not None and channel is not None and channel not in self._channels:
                    continue
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

    async def _commit_in_background(self) -> None:
        """Start committing what was handled so far; the loop goes on to fetch the next poll meanwhile."""
        await self._commit_settled()
        offsets = self._take_handled()
        if offsets:
            self._committing = asyncio.create_task(self._commit(offsets), name=f"commit-{self.group_id}")

    async def _commit_settled(self) -> None:
        """Wait for the commit in flight, if any (the loop and a rebalance's listener may both wait for it)."""
        committing = self._committing
        if committing is None:
            return
        await committing
        if self._committing is committing:
            self._committing = None

    async def _commit_handled(self) -> None:
        """Commit the partitions handled since the last commit (those still assigned), in one request."""
        offsets = self._take_handled()
        if offsets:
            await self._commit(offsets)

    def _take_handled(self) -> dict[TopicPartition, OffsetAndMetadata]:
        """The offsets handled since the last commit, of the partitions still assigned; the next commit starts
        from none."""
        handled, self._uncommitted = self._uncommitted, {}
        self._committed_at = time.monotonic()
        owned = self._consumer.assignment()
        return {tp: OffsetAndMetadata(offset, "") for tp, offset in handled.items() if tp in owned}

    async def _commit(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        names = [f"{tp.topic}/{tp.partition}" for tp in offsets]
        attempt = 0
        while True:
            try:
                await self._consumer.commit(offsets)
                return
            except (IllegalStateError, CommitFailedError) as exc:
                # A partition was revoked (or the group moved to a new generation) meanwhile: retrying cannot
                # succeed and would keep the loop from the partitions it owns now. Their next owner reads again.
                log.info("commit_skipped_after_rebalance", partitions=names, error=repr(exc))
                return
            except KafkaError as exc:
                attempt += 1
                if attempt > self._settings.transient_retries:
                    # Lost the partitions in a rebalance, or the coordinator is gone: the records will be read
                    # again by their next owner, and handlers are idempotent.
                    log.warning("commit_failed", partitions=names, error=repr(exc))
                    return
                await asyncio.sleep(self._settings.retry_backoff_s * attempt)


class _StallFence(ConsumerRebalanceListener):  # type: ignore[misc]
    """Tells the consumer loop when this process stood still for longer than the group's session.

    A ticker notes the loop's time every heartbeat interval; a gap longer than the session means the broker has
    expired this member and given its partitions to another replica. Fenced until the group assigns partitions
    again (a new generation, positions from committed offsets), or one more session passed without a rebalance
    (the group kept this member after all).
    """

    def __init__(
        self, session_s: float, tick_s: float, revoked: Callable[[Collection[TopicPartition]], Awaitable[None]]
    ) -> None:
        self._revoked = revoked
        self._session_s = session_s
        self._tick_s = tick_s
        self._last_tick = time.monotonic()
        self._fenced_at: float | None = None
        self._task: asyncio.Task[None] | None = None
        # When the group last assigned partitions, until the loop handled its first poll after that.
        self.assigned_at: float | None = None

    def start(self) -> None:
        """Start noting the loop's time."""
        self._last_tick = time.monotonic()
        self._task = asyncio.create_task(self._tick(), name="consumer-stall-fence")

    async def stop(self) -> None:
        """Stop the ticker."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self._tick_s)
            self._check()

    def _check(self) -> None:
        now = time.monotonic()
        stalled_s = now - self._last_tick
        self._last_tick = now
        if stalled_s > self._session_s:
            self._fenced_at = now
            log.warning("consumer_fenced", stalled_s=round(stalled_s, 2), session_s=self._session_s)

    def fenced(self) -> bool:
        """Whether records in hand may belong to another replica by now: drop them, handle nothing."""
        self._check()  # the loop may run before the ticker after a stop
        if self._fenced_at is not None and time.monotonic() - self._fenced_at > 2 * self._session_s:
            log.info("consumer_unfenced", reason="no rebalance came: the group kept this member")
            self._fenced_at = None
        return self._fenced_at is not None

    async def on_partitions_revoked(self, revoked: Collection[TopicPartition]) -> None:
        """Commit what was handled of the partitions going away (unless stalled: they are another's by now)."""
        if self._fenced_at is None:
            await self._revoked(revoked)

    async def on_partitions_assigned(self, assigned: Collection[TopicPartition]) -> None:
        """A new generation: fetch positions come from the committed offsets, so nothing stale is in hand."""
        self.assigned_at = time.monotonic()
        log.info("partitions_assigned", partitions=sorted(f"{tp.topic}/{tp.partition}" for tp in assigned))
        if self._fenced_at is not None:
            log.info("consumer_unfenced", reason="partitions assigned again")
            self._fenced_at = None
