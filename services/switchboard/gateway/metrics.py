"""The gateway's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

SOCKETS = Gauge("sb_gateway_sockets", "Authenticated desktop sockets on this replica")
SOCKETS_STALLED = Gauge("sb_gateway_sockets_stalled", "Sockets whose send queue is full (outbox reads paused)")
EVENTS_SENT = Counter("sb_gateway_events_sent_total", "Desk events queued to desktop sockets")
AUTH_REFUSED = Counter("sb_gateway_auth_refused_total", "Sockets closed before a session started", ["code"])
COMMANDS = Counter("sb_gateway_commands_total", "Client commands by type and outcome", ["type", "outcome"])
TRIMS = Counter("sb_gateway_outbox_trims_total", "Outbox trims after acks (folded into the desk view)")
QUEUE_STATS_FRAMES = Counter("sb_gateway_queue_stats_frames_total", "queue_stats frames queued to desktop sockets")
RESPONSE_SECONDS = Histogram(
    "sb_response_seconds",
    "Customer message to the agent's next reply (first: a conversation's first response)",
    ["tenant", "group", "kind"],
    buckets=(5, 10, 20, 30, 60, 90, 120, 180, 300, 600, 1800, 3600),
)
RESPONSES = Counter(
    "sb_responses_total",
    "Responses by whether they met the group's target in force",
    ["tenant", "group", "kind", "within"],
)
