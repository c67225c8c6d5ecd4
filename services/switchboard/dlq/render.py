"""DLQ records as operators read them: a table, a detail view, JSON; every free text PII-masked (pure: no I/O).

Masking is `runtime.pii.mask_pii`: mobile numbers, ID card numbers and e-mail addresses are masked in the
reason, the key, the tenant, the original headers and the original payload, whatever its form (a known protobuf
record field by field, bytes fields included, text, or undecodable bytes shown with replacement characters).
Identifiers the tooling wrote (dead_letter_id, service, source, error_type) are printed as they are, so an
operator can copy an id into `switchboard dlq show` or `redrive`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message

from switchboard.contracts import RECORD_TYPES, TYPE_HEADER, DeadLetterRedrive
from switchboard.dlq.entries import DlqRecord, original_key, refusal
from switchboard.runtime.pii import mask_bytes, mask_pii
from switchboard.runtime.topics import Topics

_REASON_WIDTH = 60
# Control characters other than tab and newline: printed escaped, so a payload cannot drive the operator's terminal.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class Payload:
    """The original bytes of a DeadLetter as they are shown: what they are, and the masked content."""

    kind: str  # "switchboard.v1.InboundMessage" (a decoded record), "text", "binary" or "empty"
    size: int
    content: Any  # a dict of masked fields for a record, masked text otherwise


def payload(record: DlqRecord) -> Payload:
    """The original decoded by its type header when it is a known record type, else as text, masked."""
    raw = bytes(record.letter.original)
    if not raw:
        return Payload("empty", 0, "")
    type_name = record.letter.original_headers.get(TYPE_HEADER, "")
    cls = RECORD_TYPES.get(type_name)
    if cls is not None:
        message = cls()
        try:
            message.ParseFromString(raw)
        except DecodeError:
            pass  # not what its header says (a decode_error record): shown as bytes below
        else:
            return Payload(type_name, len(raw), masked_fields(message))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return Payload("binary", len(raw), mask_bytes(raw).decode("utf-8"))
    return Payload("binary" if _CONTROL.search(text.replace("\r", "")) else "text", len(raw), mask_pii(text))


def printable(text: str) -> str:
    """Text with control characters (but tab and newline) written as escapes, e.g. \\x1b."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def masked_fields(message: Message) -> dict[str, Any]:
    """The set fields of a message by name, strings and bytes masked, enums by name, timestamps in ISO 8601."""
    return {fd.name: _field_value(fd, value) for fd, value in message.ListFields()}


def _field_value(fd: FieldDescriptor, value: Any) -> Any:
    if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
        value_fd = fd.message_type.fields_by_name["value"]
        return {mask_pii(str(k)): _scalar(value_fd, v) for k, v in value.items()}
    if fd.is_repeated:
        return [_scalar(fd, v) for v in value]
    return _scalar(fd, value)


def _scalar(fd: FieldDescriptor, value: Any) -> Any:
    if fd.message_type is not None:
        if fd.message_type.full_name == "google.protobuf.Timestamp":
            return str(value.ToJsonString())
        return masked_fields(value)
    if fd.enum_type is not None:
        known = fd.enum_type.values_by_number.get(value)
        return known.name if known is not None else value
    if fd.type == FieldDescriptor.TYPE_STRING:
        return mask_pii(value)
    if fd.type == FieldDescriptor.TYPE_BYTES:
        return mask_bytes(value).decode("utf-8")
    return value


def status(record: DlqRecord, topics: Topics) -> str:
    """ "redriven", "redrivable" or "not_redrivable"."""
    if record.redrive is not None:
        return "redriven"
    return "redrivable" if refusal(record, topics) is None else "not_redrivable"


def summary(record: DlqRecord, topics: Topics) -> dict[str, Any]:
    """One record of `dlq list --json` (no payload), masked."""
    letter = record.letter
    return {
        "dead_letter_id": record.id,
        "at": record.at.isoformat(timespec="milliseconds"),
        "service": letter.service,
        "source": letter.source,
        "error_type": letter.error_type,
        "tenant_id": mask_pii(letter.tenant_id),
        "reason": mask_pii(letter.reason),
        "status": status(record, topics),
    }


def detail(record: DlqRecord, topics: Topics) -> dict[str, Any]:
    """Every field of the DeadLetter, where it sits on the DLQ topic, its re-drive state and payload, masked."""
    letter = record.letter
    shown = payload(record)
    return {
        **summary(record, topics),
        "partition": letter.partition,
        "offset": letter.offset,
        "key": mask_pii(original_key(record)),
        "original_headers": {mask_pii(k): mask_pii(v) for k, v in sorted(letter.original_headers.items())},
        "dlq_partition": record.partition,
        "dlq_offset": record.offset,
        "redrive": _redrive(record.redrive),
        "cannot_redrive": refusal(record, topics) if record.redrive is None else None,
        "original": {"kind": shown.kind, "bytes": shown.size, "content": shown.content},
    }


def _redrive(mark: DeadLetterRedrive | None) -> dict[str, Any] | None:
    if mark is None:
        return None
    return {
        "topic": mark.topic,
        "partition": mark.partition,
        "offset": mark.offset,
        "by": mask_pii(mark.by),
        "at": mark.at.ToDatetime(tzinfo=UTC).isoformat(timespec="milliseconds"),
    }


def table(records: list[DlqRecord], topics: Topics) -> str:
    """`dlq list`: one line per record, oldest first."""
    header = ("DEAD_LETTER_ID", "AT (UTC)", "SERVICE", "SOURCE", "ERROR_TYPE", "TENANT", "STATUS", "REASON")
    rows: list[tuple[str, ...]] = [header]
    for record in records:
        s = summary(record, topics)
        reason = s["reason"] if len(s["reason"]) <= _REASON_WIDTH else s["reason"][: _REASON_WIDTH - 1] + "…"
        at = record.at.strftime("%Y-%m-%d %H:%M:%S")
        tenant = s["tenant_id"] or "-"
        cells = (s["dead_letter_id"], at, s["service"], s["source"], s["error_type"], tenant, s["status"], reason)
        rows.append(tuple(printable(cell) for cell in cells))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join([*(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)), row[-1]]).rstrip()
        for row in rows
    )


def show_text(record: DlqRecord, topics: Topics) -> str:
    """`dlq show ID`: every field on its own line, then the payload."""
    d = detail(record, topics)
    lines = [f"{name:<18}{d[name]}" for name in ("dead_letter_id", "at", "service", "source", "partition", "offset")]
    lines += [f"{name:<18}{d[name] or '-'}" for name in ("key", "tenant_id", "error_type", "reason")]
    headers = d["original_headers"] or {"-": ""}
    for i, (name, value) in enumerate(headers.items()):
        lines.append(f"{'original_headers' if i == 0 else '':<18}{name}{'=' if value else ''}{value}")
    lines.append(f"{'on the dlq':<18}partition {d['dlq_partition']}, offset {d['dlq_offset']}")
    mark = d["redrive"]
    if mark is not None:
        lines.append(
            f"{'re-driven':<18}to {mark['topic']} (partition {mark['partition']}, offset {mark['offset']}) "
            f"at {mark['at']}{' by ' + mark['by'] if mark['by'] else ''}"
        )
    else:
        lines.append(f"{'re-drive':<18}{d['cannot_redrive'] or 'can go back to ' + d['source']}")
    original = d["original"]
    lines.append(f"{'original':<18}{original['kind']}, {original['bytes']} bytes")
    lines.append(_content_text(original["content"]))
    return printable("\n".join(lines))


def _content_text(content: Any) -> str:
    if isinstance(content, dict):
        return json.dumps(content, ensure_ascii=False, indent=2)
    return str(content)
