"""The platform webhook: `POST /chat/v1/webhook/{tenant}`, a JSON message signed with the tenant's HMAC secret.

Checks, in order: known tenant, size (413) and signature and timestamp (401), refused without a DLQ record (the
request is not authenticated yet: anyone could send it); then, each refused with a clear status and a (masked) DLQ
record: content type (415), JSON (400), fields (422), replayed event id (409). A redelivered provider message id
(under a new event id) answers 200 "duplicate" and writes nothing. Kafka down: 503 with Retry-After (docs/
chat-widget.md, "Retry later"); the event id is released so the platform's retry is not mistaken for a replay.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from redis.asyncio import Redis
from redis.exceptions import RedisError

from switchboard.chat.accepting import ChatAccept
from switchboard.chat.facts import facts_from_fields
from switchboard.chat.frames import Limits, decode_json, parse_message, required_id
from switchboard.chat.metrics import CHAT_MESSAGES
from switchboard.chat.settings import ChatSettings, Tenant
from switchboard.intake.accept import RETRY_LATER_REASON
from switchboard.intake.tally import InboundOutcome
from switchboard.runtime.errors import InvalidRecord, TransientError
from switchboard.runtime.input_limits import InputRefused, error_body
from switchboard.runtime.pii import customer_ref
from switchboard.runtime.redis_client import redis_unavailable_as_transient
from switchboard.runtime.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_body
from switchboard.state.keys import Keys

PATH = "/chat/v1/webhook/{tenant_id}"


class Refusal(Exception):
    """A request the webhook will not take: HTTP status, DLQ error type, reason."""

    def __init__(self, status: int, error_type: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.error_type = error_type
        self.reason = reason


class WebhookEndpoint:
    """Takes signed platform messages."""

    def __init__(
        self, settings: ChatSettings, tenants: dict[str, Tenant], accept: ChatAccept, redis: Redis, keys: Keys
    ) -> None:
        self.settings = settings
        self.tenants = tenants
        self.accept = accept
        self.redis = redis
        self.keys = keys
        self.limits = Limits(settings.chat_max_text_chars, settings.chat_max_url_chars)

    async def receive(self, tenant_id: str, request: Request) -> JSONResponse:
        """One webhook request."""
        raw = b""
        authenticated = False
        try:
            raw = await self._authenticated_body(tenant_id, request)
            authenticated = True
            return await self._take(tenant_id, request, raw)
        except Refusal as refusal:
            CHAT_MESSAGES.labels("webhook", "refused").inc()
            if authenticated:
                await self.accept.refuse(
                    source=f"http:{request.url.path}",
                    reason=refusal.reason,
                    error_type=refusal.error_type,
                    raw=raw[: self.settings.chat_max_body_bytes],
                    tenant_id=tenant_id,
                )
            else:
                # No DLQ record: anyone can send an unsigned request, and the DLQ must not be theirs to fill.
                self.accept.count("", InboundOutcome.REFUSED)
            # `detail` is the documented error shape (runtime/input_limits.py); `reason`, the same text, stays for
            # platforms that read it.
            body = {**error_body(refusal.error_type, refusal.reason), "reason": refusal.reason}
            return JSONResponse(body, refusal.status)
        except TransientError:
            CHAT_MESSAGES.labels("webhook", "retry_later").inc()
            self.accept.count(tenant_id, InboundOutcome.RETRY_LATER)
            retry = str(self.settings.chat_retry_after_s)
            body = {"error": "retry_later", "reason": RETRY_LATER_REASON}
            return JSONResponse(body, 503, headers={"Retry-After": retry})

    async def _authenticated_body(self, tenant_id: str, request: Request) -> bytes:
        """The body of a request signed by a known tenant's secret; Refusal (413, 401) before that is known."""
        tenant = self.tenants.get(tenant_id)
        if tenant is None:
            raise Refusal(401, "bad_signature", "unknown tenant")
        limit = self.settings.chat_max_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise Refusal(413, "too_large", f"body is larger than {limit} bytes")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise Refusal(413, "too_large", f"body is larger than {limit} bytes")
        failure = verify_body(
            tenant.secret,
            request.headers.get(TIMESTAMP_HEADER),
            request.headers.get(SIGNATURE_HEADER),
            bytes(body),
            time.time(),
            self.settings.chat_signature_tolerance_s,
        )
        if failure:
            raise Refusal(401, "bad_signature", failure)
        return bytes(body)

    async def _take(self, tenant_id: str, request: Request, raw: bytes) -> JSONResponse:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise Refusal(415, "unsupported_media_type", f"content type must be application/json, not {content_type!r}")
        fields = _fields(raw, self.limits, self.settings.chat_max_body_bytes)
        event_id, provider_id = fields["event_id"], fields["message_id"]
        marker = self.keys.chat_webhook_event(tenant_id, event_id)
        # A signature is good for `tolerance` seconds either way, so an event id must be remembered for twice that.
        ttl = 2 * self.settings.chat_signature_tolerance_s
        with redis_unavailable_as_transient():
            if not await self.redis.set(marker, b"1", nx=True, ex=ttl):
                raise Refusal(409, "replayed", f"event id {event_id!r} was already delivered")
        try:
            accepted = await self.accept.offer(
                fields["message"],
                tenant_id=tenant_id,
                customer=customer_ref(tenant_id, fields["customer_id"], self.tenants[tenant_id].secret),
                provider_id=provider_id,
                event_id=event_id,
                facts=fields["facts"],
            )
        except TransientError:
            await self._release(marker)
            raise
        status = "duplicate" if accepted.duplicate else "accepted"
        CHAT_MESSAGES.labels("webhook", status).inc()
        body = {"status": status, "message_id": accepted.message_id, "conversation_id": accepted.conversation_id}
        return JSONResponse(body)

    async def _release(self, marker: str) -> None:
        # If Redis fails here the marker expires; until then the retry gets 409 instead of being taken twice.
        with contextlib.suppress(RedisError):
            await self.redis.delete(marker)


def _fields(raw: bytes, limits: Limits, max_bytes: int) -> dict[str, Any]:
    try:
        fields = decode_json(raw, max_bytes)
    except InputRefused as exc:  # nested too deep, lone surrogates, control characters: runtime/input_limits.py
        raise Refusal(exc.status, exc.kind, exc.reason) from exc
    except InvalidRecord as exc:
        raise Refusal(400, exc.error_type, exc.reason) from exc
    try:
        return {
            "event_id": required_id(fields, "event_id"),
            "customer_id": required_id(fields, "customer_id"),
            "message_id": required_id(fields, "message_id"),
            "message": parse_message(fields, limits),
            # Signed by the tenant's secret: the body's tier, order status, dispute stage and category are facts.
            "facts": facts_from_fields(fields, "webhook"),
        }
    except InvalidRecord as exc:
        raise Refusal(422, exc.error_type, exc.reason) from exc
