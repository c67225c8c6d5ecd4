"""`sb_websocket_connections{service,kind}`: one gauge for the services that hold websockets (chat, gateway, phone),
defined once so that services running in one process (tests) share it. Only those services import this module, so
no other service announces the family."""

from __future__ import annotations

from prometheus_client import Gauge

WEBSOCKETS = Gauge(
    "sb_websocket_connections",
    "Open websockets on this replica (widget: customers' chat, desk: agent desktops, phone_stream: call platforms)",
    ["service", "kind"],
)
