"""The HTTP way in: a mail provider's inbound webhook posts the raw RFC 5322 message, signed with the shop's secret.

    POST /v1/email/inbound/<shop>?recipient=service@shop-a.example[&recipient=…][&sender=bounce@x]
    Content-Type: message/rfc822 (or application/octet-stream, text/plain)
    X-SB-Timestamp: <unix seconds>
    X-SB-Signature: sha256=<hex HMAC-SHA256(shop secret, "<timestamp>." + body)>    (runtime/signing.py)

Without `recipient` the To, Cc and Delivered-To headers name the recipients; only the shop's own addresses among
them are taken. Answers: 401 for an unknown shop, a missing or bad signature (and for `POST /v1/email/inbound`,
which names no shop), 413 too large: no DLQ record (not authenticated). Then 202 accepted, 200 duplicate or not
routed, 503 with Retry-After when Kafka or Redis is down or did not acknowledge in time, 415 wrong content type,
422 refused (with a DLQ record).
"""

from __future__ import annotations

import time
from email.utils import getaddresses
from typing import Annotated

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse

from switchboard.email.charsets import header_text
from switchboard.email.inbox import EmailInbox, Verdict
from switchboard.email.metrics import RECEIVED
from switchboard.email.parse import parse_message
from switchboard.intake.tally import InboundOutcome
from switchboard.runtime.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_body

UNSIGNED_PATH = "/v1/email/inbound"
PATH = UNSIGNED_PATH + "/{tenant_id}"
SOURCE = f"http:{UNSIGNED_PATH}"
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


def _unauthorized(inbox: EmailInbox, status: int, detail: str) -> JSONResponse:
    # No DLQ record: anyone can send this request, and the DLQ must not be theirs to fill (docs/dlq.md).
    RECEIVED.labels("refused", "http").inc()
    inbox.intake.tally.count("", InboundOutcome.REFUSED)
    error = "unauthorized" if status == 401 else "too_large"
    return JSONResponse({"result": "refused", "error": error, "detail": detail}, status_code=status)


def install_webhook(app: FastAPI, inbox: EmailInbox) -> None:
    """Add the inbound-mail routes to the service's app."""
    limit = inbox.settings.max_message_bytes
    secrets = inbox.settings.webhook_secrets()
    tolerance_s = inbox.settings.email_webhook_tolerance_s

    @app.post(UNSIGNED_PATH)
    async def unsigned_email() -> JSONResponse:
        return _unauthorized(inbox, 401, f"post to {UNSIGNED_PATH}/<shop>, signed with the shop's secret")

    @app.post(PATH, status_code=202)
    async def inbound_email(
        tenant_id: str,
        request: Request,
        recipient: Annotated[list[str] | None, Query()] = None,
        sender: Annotated[str | None, Query()] = None,
    ) -> JSONResponse:
        secret = secrets.get(tenant_id)
        if secret is None:
            return _unauthorized(inbox, 401, "unknown shop, or no webhook secret for it")
        declared = request.headers.get("content-length", "")
        # Over the limit: not read (the sender said how big it is), or not read further; never checked either.
        raw, complete = (
            (b"", False) if declared.isdigit() and int(declared) > limit else await _read_capped(request, limit)
        )
        if not complete:
            return _unauthorized(inbox, 413, f"message is larger than {limit} bytes")
        headers = request.headers
        failure = verify_body(
            secret, headers.get(TIMESTAMP_HEADER), headers.get(SIGNATURE_HEADER), raw, time.time(), tolerance_s
        )
        if failure:
            return _unauthorized(inbox, 401, failure)
        return await _take(inbox, tenant_id, request, raw, recipient, sender)


async def _take(
    inbox: EmailInbox, tenant_id: str, request: Request, raw: bytes, recipient: list[str] | None, sender: str | None
) -> JSONResponse:
    """A signed request of `tenant_id`: refusals from here on are the shop's, recorded in the DLQ."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in CONTENT_TYPES:
        reason = f"content type must be one of {', '.join(sorted(CONTENT_TYPES))}"
        head = raw[:DEAD_LETTER_HEAD_BYTES]
        verdict = await inbox.refuse(
            head, SOURCE, reason, "unsupported_media_type", [], tenant_id=tenant_id, is_message=False
        )
        return _response(verdict)
    recipients = recipient or _header_recipients(raw)
    # A shop's secret speaks for the shop's own addresses only.
    ours = [r for r in recipients if inbox.tenants.tenant_for(r) == tenant_id]
    if not ours:
        reason = "no recipient is an address of this shop"
        return _response(await inbox.refuse(raw, SOURCE, reason, "unknown_recipient", [], tenant_id=tenant_id))
    return _response(await inbox.receive(raw, ours, sender, SOURCE))
