"""What is on the DLQ topic, which records a filter keeps, and which can be re-driven (pure: no I/O).

A DeadLetter can go back to a topic only when it came from one: a record a consumer refused (`source` is one of this
deployment's topics, with its partition and offset). Input an adapter refused at its edge (an HTTP request, an SMTP
message, a websocket frame) never was a record: its sender was told it was refused (4xx, SMTP 5xx, a close code),
and only the sender can send it again, corrected.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from switchboard.contracts import REDRIVEN_FROM_HEADER, DeadLetter, DeadLetterRedrive
from switchboard.runtime.topics import Topics


@dataclass(frozen=True)
class DlqRecord:
    """One DeadLetter with where it sits on the DLQ topic, and its re-drive when it had one."""

    letter: DeadLetter
    partition: int
    offset: int
    dlq_key: str = ""
    redrive: DeadLetterRedrive | None = None

    @property
    def id(self) -> str:
        """The dead_letter_id operators name it by."""
        return str(self.letter.dead_letter_id)

    @property
    def at(self) -> datetime:
        """When it was dead-lettered (UTC)."""
        return self.letter.at.ToDatetime(tzinfo=UTC)


@dataclass(frozen=True)
class Filter:
    """Which DeadLetters a listing or a re-drive by reason takes; an empty field takes every value."""

    reason: str = ""
    service: str = ""
    tenant: str = ""
    since: datetime | None = None

    def keeps(self, record: DlqRecord) -> bool:
        """True when the record matches every field that is set (`reason` is the error_type, e.g. "invalid")."""
        letter = record.letter
        return (
            (not self.reason or letter.error_type == self.reason)
            and (not self.service or letter.service == self.service)
            and (not self.tenant or letter.tenant_id == self.tenant)
            and (self.since is None or record.at >= self.since)
        )


_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_since(text: str, now: datetime) -> datetime:
    """`--since`: a duration back from `now` (90s, 30m, 1h, 2d) or an ISO 8601 time (UTC when it names no zone)."""
    match = _DURATION.match(text.strip())
    if match:
        return now - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"--since {text!r}: give a duration (30m, 1h, 2d) or an ISO time (2026-11-11T00:00)") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def attach_redrives(records: Iterable[DlqRecord], redrives: Iterable[DeadLetterRedrive]) -> list[DlqRecord]:
    """The records with their re-drive marks attached (the first mark wins; one is written per DeadLetter)."""
    marks: dict[str, DeadLetterRedrive] = {}
    for mark in redrives:
        marks.setdefault(mark.dead_letter_id, mark)
    return [replace(r, redrive=marks[r.id]) if r.id in marks and r.redrive is None else r for r in records]


def refusal(record: DlqRecord, topics: Topics) -> str | None:
    """Why this record cannot be re-driven now, or None when it can."""
    letter = record.letter
    if record.redrive is not None:
        mark = record.redrive
        return (
            f"already re-driven to {mark.topic} (partition {mark.partition}, offset {mark.offset}) "
            f"at {mark.at.ToDatetime(tzinfo=UTC).isoformat(timespec='seconds')}"
        )
    if letter.partition < 0 or letter.offset < 0 or not _is_topic_name(letter.source):
        return (
            f"{letter.source or 'this'} input never came from a topic: it was refused at a service's edge (its "
            "sender was answered with the refusal), so there is no record to send back"
        )
    redrivable = {spec.name for spec in topics.specs()} - {topics.dlq}
    if letter.source not in redrivable:
        return f"{letter.source} is not a topic of this deployment (SB_TOPIC_PREFIX={topics.prefix!r})"
    return None


def _is_topic_name(source: str) -> bool:
    # Edge sources read "http:/v1/messages", "smtp", "ws:/chat/v1/ws": a topic name has no colon or slash.
    return bool(source) and not re.search(r"[:/]", source) and source != "smtp"


def redrive_headers(letter: DeadLetter) -> list[tuple[str, bytes]]:
    """The original headers (the type header among them), plus the DeadLetter the record was re-driven from."""
    headers = [(k, v.encode("utf-8")) for k, v in sorted(letter.original_headers.items()) if k != REDRIVEN_FROM_HEADER]
    return [*headers, (REDRIVEN_FROM_HEADER, letter.dead_letter_id.encode("ascii"))]


def original_key(record: DlqRecord) -> str:
    """The original record's key: the DeadLetter's own field, else the DLQ record's key (which is the original
    key unless there was none: then it is the error type). "" when the original had no key."""
    letter = record.letter
    if letter.key:
        return str(letter.key)
    return record.dlq_key if record.dlq_key != letter.error_type else ""


def newest(records: Sequence[DlqRecord], limit: int | None) -> list[DlqRecord]:
    """The `limit` most recent records (all when None), oldest first."""
    ordered = sorted(records, key=lambda r: (r.at, r.partition, r.offset))
    return ordered if limit is None else ordered[-limit:] if limit > 0 else []


@dataclass(frozen=True)
class Outcome:
    """What a re-drive did (or would do) with one DeadLetter id."""

    dead_letter_id: str
    verdict: str  # "redriven", "would_redrive", "skipped" (re-driven before), "refused", "not_found", "failed"
    detail: str


@dataclass(frozen=True)
class RedrivePlan:
    """The records a re-drive sends, and the outcome of every one it does not send."""

    send: list[DlqRecord]
    kept_back: list[Outcome]


def plan_redrive(
    records: Sequence[DlqRecord], topics: Topics, *, ids: Sequence[str] = (), by_filter: Filter | None = None
) -> RedrivePlan:
    """Which of `records` go back: the ones named by id (in the order given), or every one `by_filter` keeps."""
    send: list[DlqRecord] = []
    kept_back: list[Outcome] = []
    by_id = {r.id: r for r in records}
    if by_filter is not None:
        chosen: list[DlqRecord | str] = [r for r in newest(records, None) if by_filter.keeps(r)]
    else:
        chosen = [by_id.get(i, i) for i in dict.fromkeys(ids)]
    for item in chosen:
        if isinstance(item, str):
            kept_back.append(Outcome(item, "not_found", f"no DeadLetter with this id on {topics.dlq}"))
            continue
        why_not = refusal(item, topics)
        if why_not is None:
            send.append(item)
        else:
            kept_back.append(Outcome(item.id, "skipped" if item.redrive is not None else "refused", why_not))
    return RedrivePlan(send, kept_back)
