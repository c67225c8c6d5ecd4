"""The phone adapter's websocket: a telephony platform streams a tenant's call events and ASR segments.

Each frame is a delivery (`{"id": ..., "items": [...]}` or one item). Frames are handled concurrently (up to
`phone_ws_inflight_frames`, then the socket is not read further), so a segment waiting for its predecessor does
not hold up the frame that carries it; a call's lifecycle events keep the order they were sent in (`_start`).
Every frame gets exactly one answer:
`{"type": "ack", "id", "results"}` after Kafka acked its records (plus `announcements` for waiting calls while the
tenant's surge profile asks for them, see announce.py), or `{"type": "error", "id", "code", "reason"}`
with code `retry_later` (not acknowledged in time: maybe stored, send it again with the same id) or the
refusal's error type (DLQ record written).
Close codes: 4401 unknown API key, 1009 frame too big, 1008 more malformed frames than
`phone_ws_refused_per_s` / `phone_ws_refused_burst` allow (each frame that does not parse spends a token; past
them the socket is closed without a DLQ record for the frame). Refusals of well-formed items (unknown call, wrong
number) spend none: they come from the calls' state, and the tenant's DLQ budget bounds them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from switchboard.intake.accept import RETRY_LATER_REASON
from switchboard.intake.tally import InboundOutcome
from switchboard.phone.adapter import ItemResult, PhoneAdapter, dump
from switchboard.phone.announce import Announcer, answer
from switchboard.phone.metrics import PHONE_REFUSED, PHONE_RETRY_LATER, PHONE_STREAMS
from switchboard.phone.settings import PhoneSettings
from switchboard.phone.wire import CallEnded, Delivery, PhoneInputError, PhoneItem, Segment, delivery_id, parse_delivery
from switchboard.runtime.buckets import TokenBucket
from switchboard.runtime.errors import TransientError
from switchboard.runtime.logs import get_logger

log = get_logger(__name__)

STREAM_PATH = "/v1/phone/stream"
CLOSE_UNAUTHORIZED = 4401
CLOSE_TOO_BIG = 1009
CLOSE_POLICY = 1008


@dataclass(eq=False)
class _Unit:
    """A part of a frame in hand: resolved when it was handled (or failed)."""

    done: asyncio.Future[None]
    lifecycle: bool
    calls: set[str]


@dataclass
class _Part:
    items: Sequence[PhoneItem]
    after: list[asyncio.Future[None]]
    unit: _Unit


def _calls(items: Sequence[PhoneItem]) -> set[str]:
    return {item.call_id for item in items}


class StreamSession:
    """One platform connection of one tenant."""

    def __init__(
        self, ws: WebSocket, adapter: PhoneAdapter, announcer: Announcer, settings: PhoneSettings, tenant_id: str
    ) -> None:
        self.ws = ws
        self.adapter = adapter
        self.announcer = announcer
        self.settings = settings
        self.tenant_id = tenant_id
        self._send_lock = asyncio.Lock()
        self._slots = asyncio.Semaphore(settings.phone_ws_inflight_frames)
        self._tasks: set[asyncio.Task[None]] = set()
        # Parts of frames in hand, per call, that later frames of the call may have to wait for.
        self._units: dict[str, list[_Unit]] = {}
        self._refusals = TokenBucket(settings.phone_ws_refused_per_s, settings.phone_ws_refused_burst)
        self._closed = False

    async def run(self) -> None:
        """Read frames until the platform disconnects; answer each; wait for the frames in hand."""
        try:
            while not self._closed:
                message = await self.ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                raw: bytes = message.get("bytes") or (message.get("text") or "").encode()
                if len(raw) > self.settings.phone_max_frame_bytes:
                    await self._too_big(raw)
                    break
                await self._slots.acquire()
                self._start(raw)
        except WebSocketDisconnect:
            pass
        finally:
            # Records of frames in hand are still written; their answers go nowhere if the socket is gone.
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _start(self, raw: bytes) -> None:
        """Handle one frame in a task of its own, after the earlier frames it depends on.

        Dependencies keep a call's lifecycle in the order the socket sent it, without making final segments wait
        for each other (the sequencer orders those, and a segment waiting for its predecessor must not hold up
        the frame that carries the predecessor). A frame is two parts: its head (everything but call.ended) waits
        for earlier parts of its calls that carry lifecycle events, so call.started comes first; its tail
        (call.ended) waits for every earlier part of its calls, its own head included, so ended comes last.
        """
        try:
            delivery = parse_delivery(raw, self.settings.phone_max_items, self.settings.phone_max_text_chars)
        except PhoneInputError as error:
            # A malformed frame spends a token of the socket's budget; with none left the socket is closed.
            refusal = self._refuse(error, raw) if self._refusals.take() else self._close_flooder()
            self._track(asyncio.create_task(refusal), [])
            return
        loop = asyncio.get_running_loop()
        parts: list[_Part] = []
        head = [item for item in delivery.items if not isinstance(item, CallEnded)]
        tail = [item for item in delivery.items if isinstance(item, CallEnded)]
        if head:
            lifecycle = any(not isinstance(item, Segment) for item in head)
            after = [u.done for c in _calls(head) for u in self._units.get(c, []) if u.lifecycle]
            parts.append(_Part(head, after, _Unit(loop.create_future(), lifecycle, _calls(head))))
        if tail:
            after = [u.done for c in _calls(tail) for u in self._units.get(c, [])] + [p.unit.done for p in parts]
            parts.append(_Part(tail, after, _Unit(loop.create_future(), True, _calls(tail))))
        for part in parts:
            for call_id in part.unit.calls:
                self._units.setdefault(call_id, []).append(part.unit)
        self._track(asyncio.create_task(self._frame(delivery.id, raw, parts)), [p.unit for p in parts])

    def _track(self, task: asyncio.Task[None], units: list[_Unit]) -> None:
        self._tasks.add(task)

        def done(finished: asyncio.Task[None]) -> None:
            self._tasks.discard(finished)
            for unit in units:
                for call_id in unit.calls:
                    pending = self._units.get(call_id, [])
                    if unit in pending:
                        pending.remove(unit)
                    if not pending:
                        self._units.pop(call_id, None)
            self._slots.release()

        task.add_done_callback(done)

    async def _frame(self, frame_id: str, raw: bytes, parts: list[_Part]) -> None:
        results: list[ItemResult] = []
        try:
            for part in parts:
                if part.after:
                    await asyncio.wait(part.after)
                results += await self.adapter.handle(
                    self.tenant_id, Delivery.model_construct(id=frame_id, items=list(part.items))
                )
                part.unit.done.set_result(None)
            handled = Delivery.model_construct(id=frame_id, items=[item for part in parts for item in part.items])
            await self._send({"type": "ack", **await answer(self.announcer, self.tenant_id, handled, results)})
        except PhoneInputError as error:
            await self._refuse(error, raw)
        except TransientError as exc:
            await self._retry_later(frame_id, exc)
        except Exception as exc:  # one bad frame must not end the platform's connection of every call
            log.exception("phone_frame_failed", tenant_id=self.tenant_id, error=repr(exc))
            await self._send({"type": "error", "id": frame_id, "code": "internal", "reason": "internal error"})
        finally:
            for part in parts:
                if not part.unit.done.done():
                    part.unit.done.set_result(None)

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
        self.adapter.intake.tally.count(self.tenant_id, InboundOutcome.RETRY_LATER)
        log.warning("phone_retry_later", tenant_id=self.tenant_id, error=repr(exc))
        await self._send(
            {
                "type": "error",
                "id": frame_id,
                "code": "retry_later",
                "retry_after_s": self.settings.retry_after_s,
                "reason": RETRY_LATER_REASON,
            }
        )

    async def _close_flooder(self) -> None:
        """More malformed frames than the socket's budget: close it 1008; the frame leaves no DLQ record."""
        PHONE_REFUSED.labels("rate_limited").inc()
        self.adapter.intake.tally.count(self.tenant_id, InboundOutcome.REFUSED)
        if self._closed:
            return
        self._closed = True
        log.warning("phone_stream_closed_refused_frames", tenant_id=self.tenant_id)
        async with self._send_lock:
            if self.ws.application_state == WebSocketState.CONNECTED:
                with contextlib.suppress(RuntimeError, OSError):
                    await self.ws.close(CLOSE_POLICY, "too many refused frames")

    async def _too_big(self, raw: bytes) -> None:
        limit = self.settings.phone_max_frame_bytes
        error = PhoneInputError(f"frame of {len(raw)} bytes, at most {limit}", "too_large", 413)
        try:
            await self.adapter.reject(source="ws:" + STREAM_PATH, error=error, raw=raw, tenant_id=self.tenant_id)
        except TransientError as exc:
            log.warning("phone_dead_letter_failed", error=repr(exc))
            # The frame is refused all the same (the socket closes): counted here, Intake.reject did not.
            self.adapter.intake.tally.count(self.tenant_id, InboundOutcome.REFUSED)
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


def install_ws_routes(app: FastAPI, adapter: PhoneAdapter, announcer: Announcer, settings: PhoneSettings) -> None:
    """Mount the websocket endpoint on the service's app."""

    @app.websocket(STREAM_PATH)
    async def phone_stream(ws: WebSocket) -> None:
        await ws.accept()
        tenant_id = adapter.directory.tenant_for_key(ws.headers.get("x-api-key"))
        if tenant_id is None:
            PHONE_REFUSED.labels("unauthorized").inc()
            adapter.intake.tally.count("", InboundOutcome.REFUSED)
            await ws.close(CLOSE_UNAUTHORIZED, "missing or unknown X-Api-Key")
            return
        PHONE_STREAMS.inc()
        try:
            await StreamSession(ws, adapter, announcer, settings, tenant_id).run()
        finally:
            PHONE_STREAMS.dec()
