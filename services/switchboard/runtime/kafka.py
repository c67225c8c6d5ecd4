"""The one Kafka producer wrapper, the one topic admin, and the one source of every Kafka client's connection
options (bootstrap, credentials, TLS) of switchboard."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.conn import create_conn
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from aiokafka.helpers import create_ssl_context
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from switchboard.contracts import CHANNEL_HEADER, TYPE_HEADER, Channel, DeadLetter, type_name
from switchboard.runtime.buckets import KeyedBuckets
from switchboard.runtime.errors import BrokerUnavailable
from switchboard.runtime.logs import get_logger
from switchboard.runtime.metrics import (
    DLQ_DROPPED,
    PRODUCE_FAILURES,
    PRODUCE_LATENCY,
    RECORDS_DEAD_LETTERED,
    RECORDS_PRODUCED,
)
from switchboard.runtime.settings import ServiceSettings
from switchboard.runtime.topics import Topics, TopicSpec

log = get_logger(__name__)

Header = tuple[str, bytes]

# The DLQ budget's sender when no tenant is known (docs/dlq.md, "Bounds").
ANONYMOUS = "anonymous"
# On a DeadLetter whose original was cut: the size it had, in bytes.
DLQ_CUT_HEADER = "sb-dlq-cut"


def kafka_client_options(settings: ServiceSettings) -> dict[str, Any]:
    """The connection options every aiokafka client takes (producer, consumer, admin): the bootstrap servers and,
    as the settings say, SASL credentials and a TLS context from the CA / certificate / key files (docs/security.md).

        AIOKafkaConsumer(topic, group_id=..., **kafka_client_options(settings))
    """
    protocol = settings.kafka_security_protocol
    options: dict[str, Any] = {"bootstrap_servers": settings.kafka_bootstrap, "security_protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        # Without a CA file the system's CAs; the broker's certificate must name the host it is reached by.
        options["ssl_context"] = create_ssl_context(
            cafile=settings.kafka_ssl_ca_file,
            certfile=settings.kafka_ssl_cert_file,
            keyfile=settings.kafka_ssl_key_file,
        )
    if protocol.startswith("SASL_"):
        password = settings.kafka_sasl_password
        options.update(
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_plain_username=settings.kafka_sasl_username,
            sasl_plain_password=password.get_secret_value() if password is not None else None,
        )
    return options


def kafka_options_for(bootstrap: str) -> dict[str, Any]:
    """`kafka_client_options` for another bootstrap address, with the credentials and TLS files of this process's
    environment (SB_KAFKA_*): the tools' clients of the cluster a stack runs on."""
    return kafka_client_options(ServiceSettings(kafka_bootstrap=bootstrap))


def describe_connection(settings: ServiceSettings) -> dict[str, str]:
    """Where and as whom a client connects, for log lines (no secret)."""
    described = {"bootstrap": settings.kafka_bootstrap, "security_protocol": settings.kafka_security_protocol}
    if settings.kafka_security_protocol.startswith("SASL_"):
        described.update(sasl_mechanism=settings.kafka_sasl_mechanism, sasl_username=settings.kafka_sasl_username or "")
    return described


class _Client(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


# How long a caller waits for a Kafka client to stop (`stop_client`).
CLIENT_STOP_S = 3.0
# Stops still finishing after their caller moved on (held here so they are not garbage-collected half way).
_closing: set[asyncio.Task[None]] = set()


async def start_client(client: _Client, settings: ServiceSettings, what: str) -> None:
    """Start an aiokafka client; when no broker takes it, log one clear error naming the cluster, the protocol, the
    user and the reason (aiokafka's start says only "Unable to bootstrap"), then raise BrokerUnavailable."""
    try:
        await client.start()
    except (KafkaError, OSError) as exc:
        reason = await connection_refusal(settings) or repr(exc)
        log.error("kafka_connect_failed", client=what, reason=reason, **describe_connection(settings))
        raise BrokerUnavailable(f"{what} could not connect to Kafka at {settings.kafka_bootstrap}: {reason}") from exc


async def stop_client(client: _Client, what: str, timeout_s: float = CLIENT_STOP_S) -> None:
    """Stop an aiokafka client, waiting at most `timeout_s` for it.

    A client's stop ends by waiting until each broker connection is closed. Over TLS that is the close handshake,
    which a broker can leave unanswered; asyncio then waits its SSL shutdown timeout (30 s) before it drops the socket.
    A rebuild that waited for that overran its 15 s limit, again on every retry. Past `timeout_s` the stop goes on in
    the background and the caller moves on: what a stop sends (a consumer leaving its group, a producer's last batch)
    has been sent by then, only the sockets are still closing."""
    task = asyncio.ensure_future(client.stop())
    done, _ = await asyncio.wait({task}, timeout=timeout_s)
    if task in done:
        task.result()
        return
    _closing.add(task)
    task.add_done_callback(_closing.discard)
    log.warning("kafka_client_stop_slow", client=what, waited_s=timeout_s)


async def connection_refusal(settings: ServiceSettings) -> str:
    """Why the first bootstrap server refuses a connection with these settings (e.g. "SaslAuthenticationFailed:
    ... invalid credentials", a certificate verify failure, connection refused); "" when it takes one now."""
    options = kafka_client_options(settings)
    del options["bootstrap_servers"]
    host, _, port = settings.kafka_bootstrap.split(",")[0].strip().rpartition(":")
    try:
        async with asyncio.timeout(10):
            conn = await create_conn(host.strip("[]"), int(port), request_timeout_ms=5000, **options)
    except Exception as exc:  # what the connection raised is the answer
        return f"{type(exc).__name__}: {exc}"
    conn.close()
    return ""


def channel_header(message: Message) -> list[Header]:
    """The `sb-channel` header of a message that has a channel (contracts.CHANNEL_HEADER), else none."""
    if "channel" not in message.DESCRIPTOR.fields_by_name:
        return []
    channel: Channel.ValueType = getattr(message, "channel")  # noqa: B009 (a field only some messages have)
    return [(CHANNEL_HEADER, Channel.Name(channel).encode())]


def now_timestamp() -> Timestamp:
    """The current time as a protobuf Timestamp."""
    ts = Timestamp()
    ts.GetCurrentTime()
    return ts


class RecordProducer:
    """Idempotent, acks=all, batching producer of protobuf records with their type header.

    `send` returns only after the broker acknowledged the record, or raises BrokerUnavailable after
    `produce_timeout_s`: an adapter acknowledges its sender only after this returns.

    It lingers 1 ms for a batch: every hop of a message (adapter, router, gateway) waits that long before its record
    goes out, and under load records pile up behind the batch in flight anyway. With 5 ms, `make bench` measured
    adapter → routing decision p50 34 ms; with 1 ms 26 ms, at the same CPU per message (docs/loadtest.md).
    """

    def __init__(self, settings: ServiceSettings, *, linger_ms: int = 1) -> None:
        self._settings = settings
        self.topics = Topics(settings.topic_prefix)
        self._producer = AIOKafkaProducer(
            **kafka_client_options(settings),
            client_id=f"{settings.service_name}-{settings.instance_id}",
            enable_idempotence=True,
            acks="all",
            linger_ms=linger_ms,
            max_batch_size=256 * 1024,
            request_timeout_ms=max(1000, int(settings.produce_timeout_s * 1000)),
        )
        # One budget per process: with N replicas a sender gets N times it (docs/dlq.md).
        self._dlq_budget = KeyedBuckets(settings.dlq_rate_per_s, settings.dlq_burst, overflow_key=ANONYMOUS)
        hourly = settings.dlq_bytes_per_hour
        self._dlq_bytes = KeyedBuckets(hourly / 3600, hourly, overflow_key=ANONYMOUS)

    async def start(self) -> None:
        """Connect to the cluster (raises BrokerUnavailable, after a clear log line, when no broker takes it)."""
        await start_client(self._producer, self._settings, "producer")

    async def stop(self) -> None:
        """Flush what is pending and disconnect."""
        await self._producer.flush()
        await stop_client(self._producer, "producer")

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
                    record_headers = [(TYPE_HEADER, type_name(message).encode()), *channel_header(message), *headers]
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
        bounded: bool = True,
    ) -> DeadLetter | None:
        """Write a DeadLetter record (waiting for the broker's ack) and return it; None when it was not written.

        `bounded` (input refused at a service's edge): the record is written only while its sender (`tenant_id`,
        else `anonymous`) is within its DLQ budgets (records a second, bytes an hour), else dropped and counted in
        sb_dlq_dropped_total, and an original over SB_DLQ_MAX_PAYLOAD_BYTES is cut (the record's `sb-dlq-cut`
        header holds the size it had). A record of a topic (`bounded=False`) is written whole and always: its
        sender was acknowledged, so the DLQ is where it is kept (docs/dlq.md).
        """
        service = self._settings.service_name
        headers: list[Header] = []
        if bounded:
            sender = tenant_id or ANONYMOUS
            limit = self._settings.dlq_max_payload_bytes
            kept = min(len(original), limit)
            if not (self._dlq_budget.take(sender) and self._dlq_bytes.take(sender, kept)):
                DLQ_DROPPED.labels(service, error_type).inc()
                return None
            if len(original) > limit:
                headers.append((DLQ_CUT_HEADER, str(len(original)).encode()))
                reason += f" (the DLQ keeps the first {limit} of {len(original)} bytes)"
                original = original[:limit]
        letter = DeadLetter(
            dead_letter_id=uuid.uuid4().hex,
            tenant_id=tenant_id,
            service=service,
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
        await self.send(self.topics.dlq, key or error_type, letter, headers)
        RECORDS_DEAD_LETTERED.labels(service, error_type).inc()
        log.warning("dead_lettered", source=source, error_type=error_type, reason=reason, tenant_id=tenant_id)
        return letter


async def ensure_topics(kafka: ServiceSettings | str, specs: Sequence[TopicSpec], replication: int = 1) -> None:
    """Create the topics that do not exist yet (idempotent), on the settings' cluster or at a bootstrap address
    (with the environment's credentials, `kafka_options_for`)."""
    settings = kafka if isinstance(kafka, ServiceSettings) else ServiceSettings(kafka_bootstrap=kafka)
    admin = AIOKafkaAdminClient(**kafka_client_options(settings), client_id="switchboard-admin")
    await start_client(admin, settings, "admin")
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
