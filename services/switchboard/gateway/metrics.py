"""The gateway's Prometheus metrics (desk sockets: `sb_websocket_connections{kind="desk"}`, state/websockets.py)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from switchboard.state.websockets import WEBSOCKETS

# Authenticated desktop sessions on this replica.
DESK_SOCKETS = WEBSOCKETS.labels("gateway", "desk")
SOCKETS_STALLED = Gauge("sb_gateway_sockets_stalled", "Sockets whose send queue is full (outbox reads paused)")
EVENTS_SENT = Counter("sb_gateway_events_sent_total", "Desk events queued to desktop sockets")
AUTH_REFUSED = Counter("sb_gateway_auth_refused_total", "Sockets closed before a session started", ["code"])
DESK_RECOVERIES = Counter(
    "sb_gateway_desk_recoveries_total",
    "Connected desks logged in again after Redis lost their session or outbox: recovered, waiting (presence had not "
    "rebuilt the agent yet; retried), gave_up (closed 4012)",
    ["result"],
)
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

# The queues and agents of every skill group, from the supervisor board's sampler (board_stats.py): the figures the
# board shows, set from the same reads. Every replica exports the same numbers: aggregate with max, never sum.
QUEUE_WAITING = Gauge(
    "sb_queue_waiting", "Conversations waiting in a skill group's queue", ["tenant", "group", "channel"]
)
QUEUE_OLDEST_WAIT = Gauge(
    "sb_queue_oldest_wait_seconds",
    "Wait of the oldest conversation at the head of a skill group's queue (0: none waiting)",
    ["tenant", "group", "channel"],
)
SERVICE_LEVEL = Gauge(
    "sb_service_level",
    "Share of a group's arrivals answered within the target over the service-level window (absent: none arrived)",
    ["tenant", "group"],
)
SERVICE_LEVEL_TARGET = Gauge(
    "sb_service_level_target_seconds", "The service-level target in force for a group", ["tenant", "group"]
)
OCCUPANCY = Gauge(
    "sb_occupancy", "Used over effective slots of a group's agents who are not offline", ["tenant", "group"]
)
AGENTS = Gauge("sb_agents", "A skill group's agents by status", ["tenant", "group", "status"])
