"""Send DeadLetters' originals back to the topics they came from, each with a DeadLetterRedrive mark on the DLQ.

Each batch of re-driven records and their marks is one Kafka transaction: a record goes back if and only if its
mark is written, so a second re-drive of the same DeadLetter finds the mark and skips it. Every run uses the same
transactional id (per topic prefix): starting one fences a run still at work and waits for its open transaction to
end, and the DLQ is read only after that, so two operators re-driving at once cannot send one record twice.
"""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from switchboard.contracts import TYPE_HEADER, DeadLetterRedrive, type_name
from switchboard.dlq.entries import (
    DlqRecord,
    Filter,
    Outcome,
    newest,
    original_key,
    plan_redrive,
    redrive_headers,
)
from switchboard.dlq.reader import Scope, read_dlq
from switchboard.runtime.errors import BrokerUnavailable
from switchboard.runtime.kafka import kafka_client_options, now_timestamp, start_client, stop_client
from switchboard.runtime.settings import ServiceSettings
from switchboard.runtime.topics import Topics

# Records per transaction: large enough to re-drive a burst quickly, small enough that a failure loses little.
BATCH = 200


@dataclass(frozen=True)
class Selection:
    """What to re-drive: DeadLetter ids, or every record a filter keeps (its `reason` set)."""

    ids: Sequence[str] = ()
    by_filter: Filter | None = None

    def scope(self) -> Scope:
        """The DeadLetters a scan for this selection holds on to."""
        if self.by_filter is not None:
            return Scope(keep=self.by_filter.keeps)
        wanted = set(self.ids)
        return Scope(keep=lambda r: r.id in wanted)


def transactional_id(topics: Topics) -> str:
    """One id for every re-drive of a deployment (the KafkaUser running the command needs it in its ACLs)."""
    return f"{topics.prefix}switchboard-dlq-redrive"


def operator() -> str:
    """Who runs the command, for the mark ("" when the process has no user name, as in some containers)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


async def dry_run(settings: ServiceSettings, selection: Selection) -> list[Outcome]:
    """What `redrive` would do now, sending nothing."""
    topics = Topics(settings.topic_prefix)
    scan = await read_dlq(settings, scope=selection.scope())
    plan = plan_redrive(scan.records, topics, ids=selection.ids, by_filter=selection.by_filter)
    would = [Outcome(r.id, "would_redrive", f"to {r.letter.source}") for r in plan.send]
    return _in_order(selection, scan.records, would + plan.kept_back)


async def redrive(settings: ServiceSettings, selection: Selection) -> list[Outcome]:
    """Re-drive the selection; the outcome of every id selected (sent, skipped, refused or not found)."""
    topics = Topics(settings.topic_prefix)
    producer = AIOKafkaProducer(
        **kafka_client_options(settings),
        client_id="switchboard-dlq",
        transactional_id=transactional_id(topics),
        enable_idempotence=True,
        acks="all",
    )
    try:
        await start_client(producer, settings, "dlq re-drive producer")
    except BrokerUnavailable:
        await stop_client(producer, "dlq re-drive producer")
        raise
    try:
        # Read after start: starting fenced any earlier run and waited for its transaction, so its marks are seen.
        scan = await read_dlq(settings, scope=selection.scope())
        plan = plan_redrive(scan.records, topics, ids=selection.ids, by_filter=selection.by_filter)
        sent: list[Outcome] = []
        for start in range(0, len(plan.send), BATCH):
            batch = plan.send[start : start + BATCH]
            try:
                sent += await _send_batch(producer, topics, batch)
            except KafkaError as exc:
                # The transaction was aborted: none of this batch went back, nor any after it.
                why = f"not re-driven: {exc!r} (nothing of its transaction was written; run the re-drive again)"
                sent += [Outcome(r.id, "failed", why) for r in plan.send[start:]]
                break
    finally:
        await stop_client(producer, "dlq re-drive producer")
    return _in_order(selection, scan.records, sent + plan.kept_back)


async def _send_batch(producer: AIOKafkaProducer, topics: Topics, batch: list[DlqRecord]) -> list[Outcome]:
    """One transaction: the originals back to their topics, then a mark per original saying where it landed."""
    by = operator()
    async with producer.transaction():
        futures = []
        for record in batch:
            key = original_key(record)
            futures.append(
                await producer.send(
                    record.letter.source,
                    value=bytes(record.letter.original),
                    key=key.encode("utf-8") if key else None,
                    headers=redrive_headers(record.letter),
                )
            )
        landed = await asyncio.gather(*futures)
        outcomes = []
        for record, meta in zip(batch, landed, strict=True):
            mark = DeadLetterRedrive(
                dead_letter_id=record.id,
                tenant_id=record.letter.tenant_id,
                topic=record.letter.source,
                partition=meta.partition,
                offset=meta.offset,
                by=by,
                at=now_timestamp(),
            )
            await producer.send(
                topics.dlq,
                value=mark.SerializeToString(),
                key=record.id.encode("utf-8"),
                headers=[(TYPE_HEADER, type_name(mark).encode())],
            )
            outcomes.append(
                Outcome(record.id, "redriven", f"to {mark.topic} (partition {mark.partition}, offset {mark.offset})")
            )
    return outcomes


def _in_order(selection: Selection, records: list[DlqRecord], outcomes: list[Outcome]) -> list[Outcome]:
    """Outcomes in the order the ids were given, or oldest record first when chosen by a filter."""
    order = list(dict.fromkeys(selection.ids)) if selection.ids else [r.id for r in newest(records, None)]
    rank = {i: n for n, i in enumerate(order)}
    return sorted(outcomes, key=lambda o: rank.get(o.dead_letter_id, len(rank)))
