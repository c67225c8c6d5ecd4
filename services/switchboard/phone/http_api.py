"""HTTP endpoints of the phone adapter: batches of events and segments, and post-call transcripts.

Answers: 200 with one result per item once Kafka acked every record (and, while the tenant's surge profile asks
for it, an announcement for each waiting call: announce.py); 503 + Retry-After when the broker (or Redis) is
unreachable: nothing acknowledged, though some may be stored (resend with the same ids, which is safe); 4xx with a
reason (and a DLQ record) for input that will never be taken. See docs/phone-api.md.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse

from switchboard.intake.accept import RETRY_LATER_REASON
from switchboard.intake.tally import InboundOutcome, InboundTally
from switchboard.phone.adapter import PhoneAdapter
from switchboard.phone.announce import Announcer, answer
from switchboard.phone.metrics import PHONE_REFUSED, PHONE_RETRY_LATER
from switchboard.phone.settings import PhoneSettings
from switchboard.phone.transcripts import parse_json_transcript, parse_webvtt
from switchboard.phone.wire import CALL_ID, PhoneInputError, Segment, parse_delivery
from switchboard.runtime.errors import TransientError
from switchboard.runtime.logs import get_logger

log = get_logger(__name__)

EVENTS_PATH = "/v1/phone/events"
TRANSCRIPT_PATH = "/v1/phone/calls/{call_id}/transcript"


def retry_later(settings: PhoneSettings, exc: Exception, tally: InboundTally, tenant_id: str) -> JSONResponse:
    """503 with Retry-After: the sender keeps the delivery and sends it again (counted once per delivery)."""
    PHONE_RETRY_LATER.labels("http").inc()
    tally.count(tenant_id, InboundOutcome.RETRY_LATER)
    log.warning("phone_retry_later", error=repr(exc))
    return JSONResponse(
        {"error": "retry_later", "reason": RETRY_LATER_REASON},
        status_code=503,
        headers={"Retry-After": str(settings.retry_after_s)},
    )


async def read_body(request: Request, limit: int) -> bytes:
    """The request body; over `limit` bytes it is refused (a declared length unread, a streamed one cut at limit)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PhoneInputError(f"body of {declared} bytes, at most {limit}", "too_large", 413)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            break
    return bytes(body)


def _check_size(raw: bytes, limit: int) -> None:
    if len(raw) > limit:
        raise PhoneInputError(f"body over {limit} bytes", "too_large", 413)


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def install_http_routes(app: FastAPI, adapter: PhoneAdapter, announcer: Announcer, settings: PhoneSettings) -> None:
    """Mount the HTTP endpoints on the service's app."""

    async def refuse(source: str, error: PhoneInputError, raw: bytes, tenant_id: str) -> JSONResponse:
        try:
            await adapter.reject(source=source, error=error, raw=raw, tenant_id=tenant_id)
        except TransientError as exc:
            # Without its DLQ record the refusal is not recorded yet: the sender retries and is refused then.
            return retry_later(settings, exc, adapter.intake.tally, tenant_id)
        PHONE_REFUSED.labels(error.error_type).inc()
        return JSONResponse({"error": error.error_type, "reason": error.reason}, status_code=error.status)

    def unauthorized() -> JSONResponse:
        # Not dead-lettered: anyone could fill the DLQ with unauthenticated requests. Counted instead.
        PHONE_REFUSED.labels("unauthorized").inc()
        adapter.intake.tally.count("", InboundOutcome.REFUSED)
        return JSONResponse({"error": "unauthorized", "reason": "missing or unknown X-Api-Key"}, status_code=401)

    @app.post(EVENTS_PATH)
    async def phone_events(request: Request, x_api_key: Annotated[str | None, Header()] = None) -> JSONResponse:
        """A batch of call events and transcript segments of one tenant."""
        tenant_id = adapter.directory.tenant_for_key(x_api_key)
        if tenant_id is None:
            return unauthorized()
        raw = b""
        source = "http:" + EVENTS_PATH
        try:
            raw = await read_body(request, settings.phone_max_body_bytes)
            _check_size(raw, settings.phone_max_body_bytes)
            if _media_type(request) != "application/json":
                raise PhoneInputError("Content-Type must be application/json", "unsupported_media_type", 415)
            delivery = parse_delivery(raw, settings.phone_max_items, settings.phone_max_text_chars)
            results = await adapter.handle(tenant_id, delivery)
        except PhoneInputError as error:
            return await refuse(source, error, raw, tenant_id)
        except TransientError as exc:
            return retry_later(settings, exc, adapter.intake.tally, tenant_id)
        return JSONResponse(await answer(announcer, tenant_id, delivery, results))

    @app.post(TRANSCRIPT_PATH)
    async def phone_transcript(
        call_id: str, request: Request, x_api_key: Annotated[str | None, Header()] = None
    ) -> JSONResponse:
        """A post-call transcript (text/vtt or application/json) of a call started before."""
        tenant_id = adapter.directory.tenant_for_key(x_api_key)
        if tenant_id is None:
            return unauthorized()
        raw = b""
        source = "http:" + TRANSCRIPT_PATH.format(call_id=call_id[:128])
        try:
            raw = await read_body(request, settings.phone_max_document_bytes)
            _check_size(raw, settings.phone_max_document_bytes)
            segments = _parse_transcript(_media_type(request), raw, call_id, settings.phone_max_text_chars)
            results = await adapter.import_transcript(tenant_id, call_id, segments)
        except PhoneInputError as error:
            return await refuse(source, error, raw, tenant_id)
        except TransientError as exc:
            return retry_later(settings, exc, adapter.intake.tally, tenant_id)
        counts = {"accepted": 0, "duplicate": 0}
        for result in results:
            counts[result.status] = counts.get(result.status, 0) + 1
        return JSONResponse({"call_id": call_id, "segments": len(results), **counts})


def _parse_transcript(media_type: str, raw: bytes, call_id: str, max_text_chars: int) -> list[Segment]:
    if not re.match(CALL_ID, call_id):
        raise PhoneInputError(f"bad call id {call_id[:40]!r}")
    if media_type == "text/vtt":
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PhoneInputError("WebVTT must be UTF-8", "bad_webvtt", 400) from exc
        return parse_webvtt(text, call_id, max_text_chars)
    if media_type == "application/json":
        return parse_json_transcript(raw, call_id, max_text_chars)
    raise PhoneInputError("Content-Type must be text/vtt or application/json", "unsupported_media_type", 415)
