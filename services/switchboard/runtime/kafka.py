"""The one Kafka producer wrapper and the one topic admin of switchboard."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Iterable, Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from switchboard.contracts import TYPE_HEADER, DeadLetter, type_name
from switchboard.runtime.errors import BrokerUnavailable
from switchboard.runtime.logs import get_logger
from switchboard.runtime.metrics import (
    PRODUCE_FAILURES,
    PRODUCE_LATENCY,
    RECORDS_DEAD_LETTERED,
    RECORDS_PRODUCED,
)
from switchboard.runtime.settings import ServiceSettings
from switchboard.runtime.topics import Topics, TopicSpec

log = get_logger(__name__)

Header = tuple[str, bytes]


def now_timestamp() -> Timestamp:
    """The current time as a protobuf Timestamp."""
    ts = Timestamp()
    ts.GetCurrentTime()
    return ts


class RecordProducer:
    """Idempotent, acks=all, batching producer of protobuf records with their type header.

    `send` returns only after the broker acknowledged the record, or raises BrokerUnavailable after
    `produce_timeout_s`: an adapter acknowledges its sender only after this returns.
    """

    def __init__(self, settings: ServiceSettings, *, linger_ms: int = 5) -> None:
        self._settings = settings
        self.topics = Topics(settings.topic_prefix)
        self._producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap,
            client_id=f"{settings.service_name}-{settings.instance_id}",
            enable_idempotence=True,
            acks="all",
            linger_ms=linger_ms,
            max_batch_size=256 * 1024,
            request_timeout_ms=max(1000, int(settings.produce_timeout_s * 1000)),
        )

    async def start(self) -> None:
        """Connect to the cluster (raises KafkaError when no broker answers)."""
        await self._producer.start()

    async def stop(self) -> None:
        """Flush what is pending and disconnect."""
        await self._producer.stop()

    async def send(self, topic: str, key: str, message: Message, headers: Sequence[Header] = ()) -> None:
        """Send one record and wait for the broker's acknowledgement."""
        await self.send_many(topic, [(key, message)], headers)

    async def send_many(
        self, topic: str, records: Iterable[tuple[str, Message]], headers: Sequence[Header] = ()
    ) -> None:
        """Send records in order and wait until the broker acknowledged all of them."""
        started = time.perf_counter()
        service = self._settings.service_name
        try:
            async with asyncio.timeout(self._settings.produce_timeout_s):
                futures = []
                for key, message in records:
                    record_headers = [(TYPE_HEADER, type_name(message).encode()), *headers]
                    futures.append(
                        await self._producer.send(
                            topic, value=message.SerializeToString(), key=key.encode(), headers=record_headers
                        )
                    )
                await asyncio.gather(*futures)
        except (TimeoutError, KafkaError) as exc:
            PRODUCE_FAILURES.labels(service, topic).inc()
            raise BrokerUnavailable(f"broker did not acknowledge {topic}: {exc!r}") from exc
        PRODUCE_LATENCY.labels(service).observe(time.perf_counter() - started)
        RECORDS_PRODUCED.labels(service, topic).inc(len(futures))

    async def dead_letter(
        self,
        *,
        source: str,
        reason: str,
        error_type: str,
        original: bytes,
        key: str = "",
        tenant_id: str = "",
        partition: int = -1,
        offset: int = -1,
        original_headers: dict[str, str] | None = None,
    ) -> DeadLetter:
        """Write a DeadLetter record (waiting for the broker's ack) and return it."""
        letter = DeadLetter(
            dead_letter_id=uuid.uuid4().hex,
            tenant_id=tenant_id,
            service=self._settings.service_name,
            source=source,
            partition=partition,
            offset=offset,
            reason=reason,
            error_type=error_type,
            original=original,
            original_headers=original_headers or {},
            at=now_timestamp(),
            key=key,
        )
        await self.send(self.topics.dlq, key or error_type, letter)
        RECORDS_DEAD_LETTERED.labels(self._settings.service_name, error_type).inc()
        log.warning("dead_lettered", source=source, error_type=error_type, reason=reason, tenant_id=tenant_id)
        return letter


async def ensure_topics(bootstrap: str, specs: Sequence[TopicSpec], replication: int = 1) -> None:
    """Create the topics that do not exist yet (idempotent)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="switchboard-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(spec.name, spec.partitions, replication, topic_configs=spec.configs())
            for spec in specs
            if spec.name not in existing
        ]
        if missing:
            # Another process may create them between list and create; that is fine.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
    finally:
        await admin.close()
