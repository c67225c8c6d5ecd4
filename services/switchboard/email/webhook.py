"""The HTTP way in: a mail provider's inbound webhook posts the raw RFC 5322 message.

    POST /v1/email/inbound?recipient=service@shop-a.example[&recipient=…][&sender=bounce@x]
    Content-Type: message/rfc822 (or application/octet-stream, text/plain)

Without `recipient` the To, Cc and Delivered-To headers name the recipients. Answers: 202 accepted, 200 duplicate
or not routed, 503 with Retry-After when Kafka or Redis is down, 413 too large, 415 wrong content type,
422 refused (with a DLQ record).
"""

from __future__ import annotations

from email.utils import getaddresses
from typing import Annotated

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse

from switchboard.email.charsets import header_text
from switchboard.email.inbox import EmailInbox, Verdict
from switchboard.email.parse import parse_message

PATH = "/v1/email/inbound"
CONTENT_TYPES = frozenset({"message/rfc822", "application/octet-stream", "text/plain"})
RETRY_AFTER_S = "5"
# What a DLQ record keeps of a body that is not a message at all.
DEAD_LETTER_HEAD_BYTES = 64 * 1024


def _header_recipients(raw: bytes) -> list[str]:
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    msg = parse_message(head + b"\n\n")
    values = [header_text(v) for name in ("delivered-to", "to", "cc") for v in msg.get_all(name, [])]
    return [addr for _, addr in getaddresses(values) if addr]


def _response(verdict: Verdict) -> JSONResponse:
    headers = {"Retry-After": RETRY_AFTER_S} if verdict.http_status == 503 else None
    body = {
        "result": verdict.result.value,
        "detail": verdict.detail,
        "message_ids": list(verdict.message_ids),
        "conversation_ids": list(verdict.conversation_ids),
    }
    return JSONResponse(body, status_code=verdict.http_status, headers=headers)


async def _read_capped(request: Request, cap: int) -> tuple[bytes, bool]:
    """The body and True, or its first bytes and False as soon as it grows past `cap` bytes."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        chunks.append(chunk)
        size += len(chunk)
        if size > cap:
            return b"".join(chunks), False
    return b"".join(chunks), True


def install_webhook(app: FastAPI, inbox: EmailInbox) -> None:
    """Add the inbound-mail route to the service's app."""
    limit = inbox.settings.max_message_bytes
    source = f"http:{PATH}"

    @app.post(PATH, status_code=202)
    async def inbound_email(
        request: Request,
        recipient: Annotated[list[str] | None, Query()] = None,
        sender: Annotated[str | None, Query()] = None,
    ) -> JSONResponse:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in CONTENT_TYPES:
            reason = f"content type must be one of {', '.join(sorted(CONTENT_TYPES))}"
            head, _ = await _read_capped(request, DEAD_LETTER_HEAD_BYTES)
            verdict = await inbox.refuse(
                head[:DEAD_LETTER_HEAD_BYTES],
                source,
                reason,
                "unsupported_media_type",
                recipient or [],
                is_message=False,
            )
            return _response(verdict)
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            # Not read at all: the sender said how big it is.
            raw, complete = b"", False
        else:
            raw, complete = await _read_capped(request, limit)
        if not complete:
            reason = f"message is larger than {limit} bytes"
            return _response(await inbox.refuse(raw, source, reason, "too_large", recipient or []))
        recipients = recipient or _header_recipients(raw)
        return _response(await inbox.receive(raw, recipients, sender, source))
