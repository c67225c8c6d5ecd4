"""The phone adapter's websocket: a telephony platform streams a tenant's call events and ASR segments.

Each frame is a delivery (`{"id": ..., "items": [...]}` or one item). Frames are handled concurrently (up to
`phone_ws_inflight_frames`, then the socket is not read further), so a segment waiting for its predecessor does
not hold up the frame that carries it. Every frame gets exactly one answer:
`{"type": "ack", "id", "results"}` after Kafka acked its records, or `{"type": "error", "id", "code", "reason"}`
with code `retry_later` (nothing taken, send it again) or the refusal's error type (DLQ record written).
Close codes: 4401 unknown API key, 1009 frame too big, 1011 internal error.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI, WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from switchboard.phone.adapter import PhoneAdapter, dump, results_json
from switchboard.phone.metrics import PHONE_REFUSED, PHONE_RETRY_LATER
from switchboard.phone.settings import PhoneSettings
from switchboard.phone.wire import PhoneInputError, delivery_id, parse_delivery
from switchboard.runtime.errors import TransientError
from switchboard.runtime.logs import get_logger

log = get_logger(__name__)

STREAM_PATH = "/v1/phone/stream"
CLOSE_UNAUTHORIZED = 4401
CLOSE_TOO_BIG = 1009


class StreamSession:
    """One platform connection of one tenant."""

    def __init__(self, ws: WebSocket, adapter: PhoneAdapter, settings: PhoneSettings, tenant_id: str) -> None:
        self.ws = ws
        self.adapter = adapter
        self.settings = settings
        self.tenant_id = tenant_id
        self._send_lock = asyncio.Lock()
        self._slots = asyncio.Semaphore(settings.phone_ws_inflight_frames)
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Read frames until the platform disconnects; answer each; wait for the frames in hand."""
        try:
            while True:
                message = await self.ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                raw: bytes = message.get("bytes") or (message.get("text") or "").encode()
                if len(raw) > self.settings.phone_max_frame_bytes:
                    await self._too_big(raw)
                    break
                await self._slots.acquire()
                task = asyncio.create_task(self._frame(raw))
                self._tasks.add(task)
                task.add_done_callback(self._done)
        except WebSocketDisconnect:
            pass
        finally:
            # Records of frames in hand are still written; their answers go nowhere if the socket is gone.
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()

    async def _frame(self, raw: bytes) -> None:
        frame_id = ""
        try:
            delivery = parse_delivery(raw, self.settings.phone_max_items, self.settings.phone_max_text_chars)
            frame_id = delivery.id
            results = await self.adapter.handle(self.tenant_id, delivery)
            await self._send({"type": "ack", "id": frame_id, "results": results_json(results)})
        except PhoneInputError as error:
            await self._refuse(error, raw)
        except TransientError as exc:
            await self._retry_later(frame_id or delivery_id(raw), exc)
        except Exception as exc:  # one bad frame must not end the platform's connection of every call
            log.exception("phone_frame_failed", tenant_id=self.tenant_id, error=repr(exc))
            await self._send({"type": "error", "id": frame_id, "code": "internal", "reason": "internal error"})

    async def _refuse(self, error: PhoneInputError, raw: bytes) -> None:
        frame_id = delivery_id(raw)
        try:
            await self.adapter.reject(source="ws:" + STREAM_PATH, error=error, raw=raw, tenant_id=self.tenant_id)
        except TransientError as exc:
            await self._retry_later(frame_id, exc)
            return
        PHONE_REFUSED.labels(error.error_type).inc()
        await self._send({"type": "error", "id": frame_id, "code": error.error_type, "reason": error.reason})

    async def _retry_later(self, frame_id: str, exc: Exception) -> None:
        PHONE_RETRY_LATER.labels("ws").inc()
        log.warning("phone_retry_later", tenant_id=self.tenant_id, error=repr(exc))
        await self._send(
            {
                "type": "error",
                "id": frame_id,
                "code": "retry_later",
                "retry_after_s": self.settings.retry_after_s,
                "reason": "the message broker is unavailable; nothing was taken, send it again",
            }
        )

    async def _too_big(self, raw: bytes) -> None:
        limit = self.settings.phone_max_frame_bytes
        error = PhoneInputError(f"frame of {len(raw)} bytes, at most {limit}", "too_large", 413)
        try:
            await self.adapter.reject(
                source="ws:" + STREAM_PATH, error=error, raw=raw[:limit], tenant_id=self.tenant_id
            )
        except TransientError as exc:
            log.warning("phone_dead_letter_failed", error=repr(exc))
        PHONE_REFUSED.labels(error.error_type).inc()
        await self.ws.close(CLOSE_TOO_BIG, f"frame over {limit} bytes")

    async def _send(self, frame: dict[str, Any]) -> None:
        async with self._send_lock:
            if self.ws.application_state != WebSocketState.CONNECTED:
                return
            try:
                await self.ws.send_text(dump(frame))
            except (WebSocketDisconnect, RuntimeError, OSError):
                log.info("phone_answer_undelivered", tenant_id=self.tenant_id, frame_id=frame.get("id", ""))


def install_ws_routes(app: FastAPI, adapter: PhoneAdapter, settings: PhoneSettings) -> None:
    """Mount the websocket endpoint on the service's app."""

    @app.websocket(STREAM_PATH)
    async def phone_stream(ws: WebSocket) -> None:
        await ws.accept()
        tenant_id = adapter.directory.tenant_for_key(ws.headers.get("x-api-key"))
        if tenant_id is None:
            PHONE_REFUSED.labels("unauthorized").inc()
            await ws.close(CLOSE_UNAUTHORIZED, "missing or unknown X-Api-Key")
            return
        await StreamSession(ws, adapter, settings, tenant_id).run()
