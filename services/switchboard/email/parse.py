"""Raw RFC 5322 bytes → a ParsedEmail: headers decoded, the text an agent reads, attachment metadata, limits checked.

Pure: no I/O. Refusals raise `InvalidRecord` with an error type the SMTP and HTTP edges turn into codes.
The stdlib parser (compat32 policy) is lenient and never raises on malformed structure; what it cannot read it
records as defects, and the body is then whatever text could be found.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from email import message_from_bytes
from email.message import Message
from email.utils import getaddresses, parseaddr, parsedate_to_datetime

from switchboard.email.charsets import attachment_name, decode_bytes, header_text
from switchboard.email.html_text import html_to_text
from switchboard.email.quotes import strip_quotes
from switchboard.runtime.errors import InvalidRecord
from switchboard.runtime.input_limits import clean_text

_MSGID = re.compile(r"<([^<>\s]{1,500})>")
MAX_REFERENCES = 50
_BODY_TYPES = ("text/plain", "text/html")


@dataclass(frozen=True)
class Limits:
    """What one message may contain."""

    max_attachment_bytes: int
    max_parts: int
    max_depth: int


@dataclass(frozen=True)
class AttachmentInfo:
    """An attachment's metadata; its bytes are not kept."""

    name: str
    content_type: str
    size_bytes: int
    sha256: str


@dataclass
class ParsedEmail:
    """What the adapter needs from one message."""

    message: Message
    message_id: str
    in_reply_to: str
    references: list[str]
    subject: str
    from_name: str
    from_address: str
    to_addresses: list[str]
    sent_at: datetime | None
    text: str
    attachments: list[AttachmentInfo] = field(default_factory=list)


def message_ids(value: object) -> list[str]:
    """The <id>s of a Message-ID / In-Reply-To / References header, in order, without brackets."""
    return _MSGID.findall(clean_text(str(value or "")))


def parse_message(raw: bytes) -> Message:
    """The stdlib parse of raw bytes (never raises on malformed mail)."""
    return message_from_bytes(raw)


def parse_email(raw: bytes, limits: Limits) -> ParsedEmail:
    """Decode and check one message; raises InvalidRecord when it is over a limit or has no sender."""
    msg = parse_message(raw)
    attachments = _check_structure(msg, limits)
    name, address = parseaddr(header_text(msg.get("from")))
    if "@" not in address:
        name, address = parseaddr(header_text(msg.get("sender") or msg.get("reply-to")))
    subject = header_text(msg.get("subject"))
    full = "\n\n".join(t for t in _body_texts(msg) if t.strip()).strip()
    own_ids = message_ids(msg.get("message-id"))
    reply_to = message_ids(msg.get("in-reply-to"))
    refs = message_ids(msg.get("references"))[-MAX_REFERENCES:]
    return ParsedEmail(
        message=msg,
        message_id=own_ids[0] if own_ids else "",
        in_reply_to=reply_to[-1] if reply_to else "",
        references=refs,
        subject=subject,
        from_name=name,
        from_address=address.strip().lower() if "@" in address else "",
        to_addresses=[a.lower() for _, a in getaddresses([header_text(v) for v in msg.get_all("to", [])]) if a],
        sent_at=_date(msg.get("date")),
        text=strip_quotes(full) if full else "",
        attachments=attachments,
    )


def _date(value: object) -> datetime | None:
    if not value:
        return None
    try:
        return parsedate_to_datetime(str(value))
    except (TypeError, ValueError, IndexError):
        return None


def _check_structure(msg: Message, limits: Limits) -> list[AttachmentInfo]:
    """Count parts and depth and collect attachments, refusing what is over a limit."""
    attachments: list[AttachmentInfo] = []
    total = 0
    parts = 0
    stack: list[tuple[Message, int]] = [(msg, 0)]
    while stack:
        part, depth = stack.pop()
        parts += 1
        if parts > limits.max_parts:
            raise InvalidRecord(f"message has more than {limits.max_parts} MIME parts", "too_many_parts")
        if depth > limits.max_depth:
            raise InvalidRecord(f"MIME parts nested deeper than {limits.max_depth} levels", "too_deep")
        children = part.get_payload() if part.is_multipart() else None
        if isinstance(children, list):
            if part.get_content_type() == "message/rfc822" and children and isinstance(children[0], Message):
                attachments.append(_forwarded(children[0]))
                total += attachments[-1].size_bytes
            stack.extend((child, depth + 1) for child in reversed(children) if isinstance(child, Message))
        elif _is_attachment(part) and not (part is msg and part.get_content_type() in _BODY_TYPES):
            attachments.append(_attachment(part))
            total += attachments[-1].size_bytes
        if total > limits.max_attachment_bytes:
            raise InvalidRecord(f"attachments exceed {limits.max_attachment_bytes} bytes in total", "too_large")
    return attachments


def _is_attachment(part: Message) -> bool:
    if part.get_content_disposition() == "attachment" or part.get_filename():
        return True
    return part.get_content_type() not in _BODY_TYPES


def _attachment(part: Message) -> AttachmentInfo:
    payload = part.get_payload(decode=True)
    data = payload if isinstance(payload, bytes) else b""
    return AttachmentInfo(
        name=attachment_name(part),
        content_type=part.get_content_type(),
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )


def _forwarded(inner: Message) -> AttachmentInfo:
    try:
        data = inner.as_bytes()
    except Exception:  # a forwarded message the generator cannot re-serialize still gets its metadata
        data = str(inner.get_payload()).encode("utf-8", "surrogateescape")
    subject = header_text(inner.get("subject")) or "message"
    return AttachmentInfo(f"{subject}.eml", "message/rfc822", len(data), hashlib.sha256(data).hexdigest())


def _leaf_text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    raw = payload if isinstance(payload, bytes) else b""
    try:
        charset = part.get_content_charset()
    except Exception:  # a charset parameter the parser cannot even read
        charset = None
    return decode_bytes(raw, charset)


def _body_texts(part: Message) -> list[str]:
    """The readable text of a part: plain preferred among alternatives, HTML converted, attachments skipped."""
    ctype = part.get_content_type()
    if part.is_multipart():
        children = [c for c in part.get_payload() if isinstance(c, Message)]
        if ctype == "message/rfc822":
            return []
        if ctype == "multipart/alternative":
            return _best_alternative(children)
        return [t for c in children for t in _body_texts(c)]
    if ctype == "text/html" and not _is_attachment_disposition(part):
        return [html_to_text(_leaf_text(part))]
    if ctype == "text/plain" and not _is_attachment_disposition(part):
        return [_leaf_text(part)]
    return []


def _is_attachment_disposition(part: Message) -> bool:
    return part.get_content_disposition() == "attachment"


def _best_alternative(children: list[Message]) -> list[str]:
    plain = [c for c in children if c.get_content_type() == "text/plain"]
    for child in plain + [c for c in children if c not in plain]:
        texts = [t for t in _body_texts(child) if t.strip()]
        if texts:
            return texts
    return []
