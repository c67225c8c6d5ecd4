"""What a DLQ record keeps of a refused e-mail: readable, PII-masked by the caller, and bounded in size.

Raw mail hides text in base64 and quoted-printable, where masking cannot see it; so the DLQ gets the decoded
headers, the decoded body text and the attachment list instead, and the raw bytes only when even that fails.
"""

from __future__ import annotations

from switchboard.email.charsets import attachment_name, decode_bytes, header_text
from switchboard.email.parse import parse_message

# Kafka refuses records over ~1 MB by default; a DLQ record must always fit.
MAX_DEAD_LETTER_BYTES = 256 * 1024
_HEADERS = ("from", "to", "cc", "subject", "date", "message-id", "in-reply-to", "references", "content-type")


def dead_letter_view(raw: bytes) -> bytes:
    """The decoded, size-bounded form of a message for a DLQ record."""
    head = raw[: MAX_DEAD_LETTER_BYTES * 4]
    try:
        msg = parse_message(head)
        lines = [f"{name}: {header_text(msg.get(name))}" for name in _HEADERS if msg.get(name) is not None]
        lines.append("")
        for part in msg.walk():
            if part.is_multipart():
                continue
            payload = part.get_payload(decode=True)
            data = payload if isinstance(payload, bytes) else b""
            if part.get_content_maintype() == "text":
                lines.append(f"[{part.get_content_type()}]")
                lines.append(decode_bytes(data[:MAX_DEAD_LETTER_BYTES], part.get_content_charset()))
            else:
                name = attachment_name(part)
                lines.append(f"[attachment {part.get_content_type()} {name!r} {len(data)} bytes]")
        view = "\n".join(lines).encode("utf-8", "replace")
    except Exception:  # the view is best effort; the raw head is the fallback
        view = decode_bytes(head).encode("utf-8", "replace")
    return view[:MAX_DEAD_LETTER_BYTES]
