"""`switchboard dlq` against a real broker: records a real consumer dead-lettered and input an adapter refused,
listed, shown masked, re-driven to where they came from (once), dry-run, and refused when they never were records.

The command runs as operators run it, `python -m switchboard dlq ...` in a process of its own with the runtime's
environment (KAFKA_BOOTSTRAP, SB_TOPIC_PREFIX); one run goes through the tools' `switchboard` CLI.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from switchboard.contracts import REDRIVEN_FROM_HEADER, TYPE_HEADER, Channel, InboundMessage
from switchboard.dlq.entries import newest
from switchboard.dlq.reader import DlqScan, read_dlq
from switchboard.runtime.consumer import BatchConsumer, Delivery, Rejected
from switchboard.runtime.kafka import RecordProducer
from switchboard.runtime.pii import mask_bytes
from switchboard.runtime.settings import ServiceSettings
from switchboard.runtime.topics import Topics
from tests.helpers import eventually

pytestmark = pytest.mark.broker

PHONE, EMAIL, ID_NUMBER = "13812345678", "li.lei@example.com", "110101199003074512"
PII_TEXT = f"请联系 {PHONE} or {EMAIL}, 身份证 {ID_NUMBER}"
GROUP = "dlq-test-inbound"


@dataclass
class Run:
    """A finished `dlq` command."""

    code: int
    out: str
    err: str

    def json(self) -> object:
        return json.loads(self.out)


async def dlq(
    settings: ServiceSettings, *args: str, module: str = "switchboard", env: dict[str, str] | None = None
) -> Run:
    """Run `python -m <module> dlq <args>` with the deployment's environment (plus `env`)."""
    env = {
        "KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "SB_TOPIC_PREFIX": settings.topic_prefix,
        "PATH": "/usr/bin",
        **(env or {}),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        "dlq",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())


class Inbound:
    """A consumer of the inbound topic, as a service runs it, that refuses messages while `broken` is set."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.broken = True
        self.handled: list[Delivery] = []
        self.producer = RecordProducer(settings)
        self.consumer = BatchConsumer(
            settings,
            topics=[Topics(settings.topic_prefix).inbound],
            group_id=settings.topic_prefix + GROUP,
            handler=self.handle,
            producer=self.producer,
        )

    async def handle(self, batch: Sequence[Delivery]) -> Sequence[Rejected]:
        if self.broken:
            return [Rejected(d, "the routing config of this shop failed to load", "invalid") for d in batch]
        self.handled += batch
        return []


@pytest.fixture
async def inbound(settings: ServiceSettings) -> AsyncIterator[Inbound]:
    service = Inbound(settings)
    await service.producer.start()
    await service.consumer.start()
    task = asyncio.create_task(service.consumer.run())
    try:
        yield service
    finally:
        service.consumer.stop_intake()
        await task
        await service.consumer.stop()
        await service.producer.stop()


@dataclass
class Letters:
    """The ids of the DeadLetters the scenario made."""

    refused_record: str  # an InboundMessage with PII the consumer refused ("invalid")
    garbage: str  # bytes without a type header ("decode_error")
    http_input: str  # a request body the chat adapter refused at its edge ("too_large")


async def _dead_letters(settings: ServiceSettings, producer: RecordProducer, inbound: Inbound) -> Letters:
    """Three DeadLetters, one after the other: a refused record with PII, a record without a type header, and a
    request body the chat adapter refused (masked by intake, as adapters write them)."""
    topics = Topics(settings.topic_prefix)
    message = InboundMessage(
        message_id="m-pii", tenant_id="shop-a", conversation_id="conv-pii", channel=Channel.CHANNEL_CHAT, text=PII_TEXT
    )
    await producer.send(topics.inbound, "conv-pii", message, headers=[("x-trace", b"trace-1")])
    await _until_letters(settings, 1)
    await send_raw(settings, topics.inbound, b"conv-garbage", b"\x00\x01 not a record")
    await _until_letters(settings, 2)
    await producer.dead_letter(
        source="http:/chat/v1/messages",
        reason="the message is larger than 64 KiB",
        error_type="too_large",
        original=mask_bytes(f'{{"text": "{PII_TEXT}"}}'.encode()),
        tenant_id="shop-b",
    )
    ids = [r.id for r in newest((await _until_letters(settings, 3)).records, None)]
    return Letters(*ids)


async def _until_letters(settings: ServiceSettings, count: int) -> DlqScan:
    scan = DlqScan("")

    async def enough() -> bool:
        nonlocal scan
        scan = await read_dlq(settings)
        return len(scan.records) >= count

    await eventually(enough, 60, f"{count} DeadLetters on the DLQ")
    return scan


async def send_raw(settings: ServiceSettings, topic: str, key: bytes, value: bytes) -> None:
    """A record of raw bytes with no type header, as a misbehaving producer writes it."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def _read_inbound(settings: ServiceSettings) -> list[tuple[bytes | None, bytes, dict[str, bytes]]]:
    topic = Topics(settings.topic_prefix).inbound
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        partitions = list(consumer.assignment())
        ends = await consumer.end_offsets(partitions)
        found = []
        async with asyncio.timeout(30):
            while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    found += [(r.key, r.value, dict(r.headers)) for r in records]
        return found
    finally:
        await consumer.stop()


def assert_no_pii(text: str) -> None:
    assert PHONE not in text and EMAIL not in text and ID_NUMBER not in text, text
    assert not re.search(r"(?<![0-9])1[3-9][0-9]{9}(?![0-9])", text), text


async def test_list_filters_and_masks(settings: ServiceSettings, producer: RecordProducer, inbound: Inbound) -> None:
    letters = await _dead_letters(settings, producer, inbound)
    table = await dlq(settings, "list")
    assert table.code == 0
    assert [line.split()[0] for line in table.out.splitlines()[1:]] == [
        letters.refused_record,
        letters.garbage,
        letters.http_input,
    ]
    rows = (await dlq(settings, "list", "--json")).json()
    assert isinstance(rows, list)
    status = {row["dead_letter_id"]: row["status"] for row in rows}
    assert status == {
        letters.refused_record: "redrivable",
        letters.garbage: "redrivable",
        letters.http_input: "not_redrivable",
    }
    assert {row["service"] for row in rows} == {"test"}
    only = await dlq(settings, "list", "--json", "--reason", "invalid")
    assert [row["dead_letter_id"] for row in only.json()] == [letters.refused_record]  # type: ignore[union-attr]
    tenant = await dlq(settings, "list", "--json", "--tenant", "shop-b")
    assert [row["dead_letter_id"] for row in tenant.json()] == [letters.http_input]  # type: ignore[union-attr]
    assert (await dlq(settings, "list", "--json", "--service", "router")).json() == []
    assert (await dlq(settings, "list", "--json", "--since", "2999-01-01T00:00")).json() == []
    recent = await dlq(settings, "list", "--json", "--since", "10m")
    assert len(recent.json()) == 3  # type: ignore[arg-type]
    newest = await dlq(settings, "list", "--json", "--limit", "1")
    assert [row["dead_letter_id"] for row in newest.json()] == [letters.http_input]  # type: ignore[union-attr]
    assert "1 newest of 3" in newest.err
    assert_no_pii(table.out + json.dumps(rows, ensure_ascii=False))


async def test_show_prints_every_field_with_the_payload_decoded_and_masked(
    settings: ServiceSettings, producer: RecordProducer, inbound: Inbound
) -> None:
    letters = await _dead_letters(settings, producer, inbound)
    shown = await dlq(settings, "show", letters.refused_record)
    assert shown.code == 0, shown.err
    assert_no_pii(shown.out)
    for expected in (
        letters.refused_record,
        Topics(settings.topic_prefix).inbound,
        "conv-pii",
        "shop-a",
        "invalid",
        "the routing config of this shop failed to load",
        "x-trace=trace-1",
        "sb-type=switchboard.v1.InboundMessage",
        "switchboard.v1.InboundMessage",
        "138****5678",
        "l***@example.com",
        "CHANNEL_CHAT",
        "can go back to",
    ):
        assert expected in shown.out, (expected, shown.out)
    detail = (await dlq(settings, "show", "--json", letters.refused_record)).json()
    assert isinstance(detail, dict)
    assert detail["original"]["kind"] == "switchboard.v1.InboundMessage"
    assert detail["original"]["content"]["conversation_id"] == "conv-pii"
    assert detail["key"] == "conv-pii"
    assert detail["offset"] >= 0
    edge = await dlq(settings, "show", letters.http_input)
    assert_no_pii(edge.out)
    assert "never came from a topic" in edge.out and "text" in edge.out
    missing = await dlq(settings, "show", "no-such-id")
    assert missing.code == 1 and "no DeadLetter no-such-id" in missing.err


async def test_redrive_sends_the_original_back_once_with_its_headers(
    settings: ServiceSettings, producer: RecordProducer, inbound: Inbound
) -> None:
    letters = await _dead_letters(settings, producer, inbound)
    before = await _read_inbound(settings)

    dry = await dlq(settings, "redrive", "--id", letters.refused_record, "--dry-run")
    assert dry.code == 0, dry.err
    assert f"would re-drive {letters.refused_record}" in " ".join(dry.out.split())
    assert len(await _read_inbound(settings)) == len(before)

    inbound.broken = False
    done = await dlq(settings, "redrive", "--id", letters.refused_record)
    assert done.code == 0, done.err
    assert done.out.startswith(f"re-driven      {letters.refused_record}  to {Topics(settings.topic_prefix).inbound}")
    after = await _read_inbound(settings)
    assert len(after) == len(before) + 1
    original = next(v for k, v, h in before if k == b"conv-pii")
    key, value, headers = after[-1] if after[-1][0] == b"conv-pii" else next(r for r in after if r not in before)
    assert (key, value) == (b"conv-pii", original)
    assert headers[TYPE_HEADER] == b"switchboard.v1.InboundMessage"
    assert headers["x-trace"] == b"trace-1"
    assert headers[REDRIVEN_FROM_HEADER] == letters.refused_record.encode()

    async def handled() -> bool:
        return any(d.headers.get(REDRIVEN_FROM_HEADER) == letters.refused_record for d in inbound.handled)

    await eventually(handled, 30, "the re-driven message handled by the consumer")

    again = await dlq(settings, "redrive", "--id", letters.refused_record)
    assert again.code == 1
    assert "skipped" in again.out and "already re-driven" in again.out and "nothing re-driven" in again.err
    assert len(await _read_inbound(settings)) == len(after)
    shown = await dlq(settings, "show", letters.refused_record)
    assert "re-driven" in shown.out and "to " + Topics(settings.topic_prefix).inbound in shown.out
    rows = (await dlq(settings, "list", "--json")).json()
    assert {r["dead_letter_id"]: r["status"] for r in rows}[letters.refused_record] == "redriven"  # type: ignore[index]


async def test_refused_edge_input_cannot_be_redriven_and_a_reason_redrives_the_rest(
    settings: ServiceSettings, producer: RecordProducer, inbound: Inbound
) -> None:
    letters = await _dead_letters(settings, producer, inbound)
    refused = await dlq(settings, "redrive", "--id", letters.http_input)
    assert refused.code == 1
    assert "refused" in refused.out and "never came from a topic" in refused.out
    unknown = await dlq(settings, "redrive", "--id", "nope", "--id", letters.http_input)
    assert unknown.code == 1 and "not found" in unknown.out

    by_reason = await dlq(settings, "redrive", "--reason", "too_large", "--dry-run")
    assert by_reason.code == 1 and "nothing would be re-driven" in by_reason.err

    through_tools = await dlq(settings, "redrive", "--reason", "decode_error", module="switchboard_tools")
    assert through_tools.code == 0, through_tools.err
    assert letters.garbage in through_tools.out and letters.refused_record not in through_tools.out
    redriven = [r for r in await _read_inbound(settings) if REDRIVEN_FROM_HEADER in r[2]]
    assert [(k, v) for k, v, _ in redriven] == [(b"conv-garbage", b"\x00\x01 not a record")]


async def test_two_operators_redriving_at_once_send_a_record_once(
    settings: ServiceSettings, producer: RecordProducer, inbound: Inbound
) -> None:
    letters = await _dead_letters(settings, producer, inbound)
    runs = await asyncio.gather(*(dlq(settings, "redrive", "--id", letters.refused_record) for _ in range(3)))
    redriven = [r for r in await _read_inbound(settings) if r[2].get(REDRIVEN_FROM_HEADER)]
    assert [k for k, _, _ in redriven] == [b"conv-pii"], [r.out + r.err for r in runs]
    assert [r.code for r in runs].count(0) == 1, [r.out + r.err for r in runs]
    assert all("re-driven" in r.out or "skipped" in r.out or "failed" in r.out for r in runs)


async def test_the_command_joins_no_consumer_group(settings: ServiceSettings, producer: RecordProducer) -> None:
    letter = await producer.dead_letter(
        source="smtp", reason="no tenant for this address", error_type="unknown_tenant", original=b"x"
    )
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        before = set(await admin.list_consumer_groups())
        assert (await dlq(settings, "list")).code == 0
        assert (await dlq(settings, "show", letter.dead_letter_id)).code == 0
        assert (await dlq(settings, "redrive", "--reason", "unknown_tenant")).code == 1
        assert set(await admin.list_consumer_groups()) == before
    finally:
        await admin.close()


async def test_an_unreachable_broker_is_said_plainly(settings: ServiceSettings) -> None:
    gone = ServiceSettings(kafka_bootstrap="127.0.0.1:1", topic_prefix=settings.topic_prefix)
    run = await dlq(gone, "list")
    assert run.code == 1 and "could not connect to Kafka at 127.0.0.1:1" in run.err


async def test_a_prefix_without_topics_is_said_plainly(settings: ServiceSettings) -> None:
    elsewhere = ServiceSettings(kafka_bootstrap=settings.kafka_bootstrap, topic_prefix="no-such-deployment.")
    run = await dlq(elsewhere, "list")
    assert run.code == 1 and "no topic no-such-deployment.sb.dlq.v1 on this cluster" in run.err
