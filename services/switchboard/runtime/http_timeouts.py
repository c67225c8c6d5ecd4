"""Header and body deadlines for every service's HTTP server.

uvicorn closes an idle keep-alive connection, but it has no deadline for a request that is being sent: a client
that opens a connection and sends nothing, or sends its headers a byte at a time (slowloris), or announces a body
and never finishes it, holds a connection and its buffers for as long as it likes. The protocol here is uvicorn's
httptools protocol with two deadlines:

- **header**: the request line and headers must arrive within `SB_HTTP_HEADER_TIMEOUT_S` of the connection opening
  (first request) or of the request's first byte (the next requests of a keep-alive connection; the idle time
  between them is uvicorn's keep-alive timeout). Missed: `408 Request Timeout`, connection closed.
- **body**: the whole body must arrive within `SB_HTTP_BODY_TIMEOUT_S` of the headers. Missed: 408 (if the
  application has not answered yet) and the connection closed; the application sees the client disconnect.

A websocket upgrade leaves this protocol once its headers are in: a socket's own limits take over from there.
Each deadline missed counts in `sb_http_timeouts_total{service, phase}`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import Counter
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HTTP_TIMEOUTS = Counter(
    "sb_http_timeouts_total",
    "HTTP connections closed because a request's headers or body did not arrive in time",
    ["service", "phase"],
)

# How long a connection closed for a missed deadline still reads (and drops) what its client sends.
LINGER_S = 1.0
_TIMEOUT_RESPONSE = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


class TimedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header and body deadlines (build one with `timed_http_protocol`)."""

    service = "switchboard"
    header_timeout_s = 10.0
    body_timeout_s = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._lingering = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.header_timeout_s, "header")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:
            # A later request of a keep-alive connection: its headers have the deadline from its first byte.
            self._arm(self.header_timeout_s, "header")

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()
        if not (self.parser.should_upgrade() and self._should_upgrade()):
            self._arm(self.body_timeout_s, "body")

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def _arm(self, timeout_s: float, phase: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(timeout_s, self._expired, phase)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self, phase: str) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        HTTP_TIMEOUTS.labels(self.service, phase).inc()
        cycle = self.cycle if phase == "body" else None
        if cycle is None or not cycle.response_started:
            self.transport.write(_TIMEOUT_RESPONSE)
        if cycle is not None:
            # The application waiting for the rest of the body sees the client gone, and its answer is dropped.
            cycle.disconnected = True
            cycle.message_event.set()
        if self.transport.can_write_eof():
            # A lingering close: the 408 and then our FIN go out, and what the client still sends is read and
            # dropped for a moment. Closing at once with its bytes unread would answer them with a reset, which can
            # reach the client before it read the 408.
            self._lingering = True
            self.transport.write_eof()
            self.loop.call_later(LINGER_S, self.transport.close)
        else:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if not self._lingering:
            super().data_received(data)


def timed_http_protocol(service: str, header_timeout_s: float, body_timeout_s: float) -> type[TimedHttpProtocol]:
    """The protocol class to give uvicorn (`Config(http=...)`) for one service's deadlines."""
    return type(
        "TimedHttpProtocol",
        (TimedHttpProtocol,),
        {"service": service, "header_timeout_s": header_timeout_s, "body_timeout_s": body_timeout_s},
    )
