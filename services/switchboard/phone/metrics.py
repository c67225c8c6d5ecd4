"""Prometheus metrics of the phone adapter."""

from __future__ import annotations

from prometheus_client import Counter

from switchboard.state.websockets import WEBSOCKETS

PHONE_ITEMS = Counter(
    "sb_phone_items_total", "Call events and transcript segments taken by the phone adapter", ["kind", "outcome"]
)
PHONE_REFUSED = Counter("sb_phone_refused_total", "Phone deliveries refused, by reason", ["error_type"])
PHONE_RETRY_LATER = Counter("sb_phone_retry_later_total", "Deliveries answered with retry later", ["transport"])
# Call platforms' authenticated stream sockets open on this replica.
PHONE_STREAMS = WEBSOCKETS.labels("phone", "phone_stream")
