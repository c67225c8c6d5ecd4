"""The chat adapter's own metrics (beside the runtime's produce/consume metrics)."""

from __future__ import annotations

from prometheus_client import Counter

from switchboard.state.websockets import WEBSOCKETS

CHAT_MESSAGES = Counter(
    "sb_chat_messages_total",
    "Customer messages offered to the chat adapter, by source and outcome",
    ["source", "outcome"],  # source: widget, webhook; outcome: accepted, duplicate, retry_later, refused, rate_limited
)
# Widget websockets open on this replica.
CHAT_SOCKETS = WEBSOCKETS.labels("chat", "widget")
CHAT_REPLIES = Counter(
    "sb_chat_replies_total", "Agent replies by how they left", ["route"]
)  # socket, callback, kept (for the next connection), failed
