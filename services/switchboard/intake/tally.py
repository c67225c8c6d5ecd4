"""`sb_inbound_messages_total`: every customer message offered to an adapter, counted once, by its outcome.

`Intake` counts what it decides (accepted and duplicate per record, refused per refused input whose DLQ record was
written); an adapter counts through the same `InboundTally` only what it decides before or instead of the intake
(rate_limited, not_routed, retry_later, a refusal kept without its DLQ record). Tenants are bounded to the
adapter's configured ones (state/metrics.py).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

from prometheus_client import Counter

from switchboard.state.metrics import LabelBounds, channel_label

INBOUND_MESSAGES = Counter(
    "sb_inbound_messages_total",
    "Customer messages offered to an adapter, by channel, tenant and outcome",
    ["channel", "tenant", "outcome"],
)


class InboundOutcome(enum.Enum):
    """What an adapter answered about an offered message."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    REFUSED = "refused"
    RETRY_LATER = "retry_later"
    RATE_LIMITED = "rate_limited"
    NOT_ROUTED = "not_routed"


class InboundTally:
    """The counter of one adapter's channel, with its configured tenants as the only tenant labels."""

    def __init__(self, channel: str, tenants: Iterable[str]) -> None:
        self.channel = channel_label(channel)
        self.bounds = LabelBounds.of_tenants(tenants)
        # Every configured tenant's series exist from the start (at 0), so a rate over them is defined.
        for tenant in sorted(self.bounds.tenants):
            for outcome in InboundOutcome:
                INBOUND_MESSAGES.labels(self.channel, tenant, outcome.value)

    def count(self, tenant_id: str, outcome: InboundOutcome, n: int = 1) -> None:
        """Count `n` messages of a tenant (an unconfigured one as "unknown") with this outcome."""
        if n > 0:
            INBOUND_MESSAGES.labels(self.channel, self.bounds.tenant(tenant_id), outcome.value).inc(n)
