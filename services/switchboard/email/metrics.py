"""The e-mail adapter's own Prometheus metrics (beside the runtime's)."""

from __future__ import annotations

from prometheus_client import Counter

RECEIVED = Counter(
    "sb_email_received_total",
    "Inbound e-mails by outcome (accepted, duplicate, not_routed, refused, retry_later) and way in (smtp, http)",
    ["outcome", "via"],
)
NOT_ROUTED = Counter(
    "sb_email_not_routed_total",
    "Auto-replies, bounces, list mail and loops taken but not routed to agents, by reason",
    ["reason"],
)
REPLIES_SENT = Counter("sb_email_replies_total", "Agents' replies handed to the relay, by outcome", ["outcome"])
ACKS = Counter(
    "sb_email_acks_total",
    "Acknowledgement mails to waiting customers by outcome (sent, refused, no_contact, robot_sender)",
    ["outcome"],
)
