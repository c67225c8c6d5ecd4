"""The router's domain metrics, observed from the decisions it published (one place: RouterContext.publish).

- `sb_router_decisions_total{type,tenant,group}`: every published decision.
- `sb_time_to_offer_seconds`, `sb_time_to_assign_seconds` {tenant,group,channel}: from the conversation's entry
  into its group's line (`enqueued_at`, kept across re-queues, bot holds and a customer's return) to its first offer,
  and to its assignment (assigned directly, or an offer accepted). The scripts mark the first of each per arrival
  (`Decision.first`), so a re-offer after a timeout or a re-assignment after an agent left is not measured twice.
  The group is the conversation's own (an overflow ring's agent taking it counts for its home group, like the
  service level).
- `sb_offers_missed_total{tenant,group}`: offers that timed out or were declined.
- `sb_abandoned_total{tenant,group,channel}`: conversations whose customer left while waiting.
- `sb_bot_answered_total{tenant,outcome}`: answered (the bot answered a held conversation) and escalated (a
  conversation the bot held or answered was routed to agents after all: its route decision carries a `bot:` reason).

Label values are bounded by the tenant's routing config (state/metrics.py): a group it does not name is "none".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from prometheus_client import Counter, Histogram

from switchboard.router.contract import Decision
from switchboard.routing.config import TenantRouting
from switchboard.state.metrics import NO_GROUP, channel_label

# A customer's wait: seconds to an hour (a promo's midnight queue), finer below the usual targets (20 s, 3 min).
WAIT_BUCKETS = (1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600, 900, 1800, 3600)
ROUTE_DECISIONS = ("assigned", "offered", "queued")
BOT_REASON_PREFIX = "bot:"

DECISIONS = Counter(
    "sb_router_decisions_total", "Routing decisions the router published, by type", ["type", "tenant", "group"]
)
TIME_TO_OFFER = Histogram(
    "sb_time_to_offer_seconds",
    "A conversation's entry into its group's line (enqueued_at) to its first offer",
    ["tenant", "group", "channel"],
    buckets=WAIT_BUCKETS,
)
TIME_TO_ASSIGN = Histogram(
    "sb_time_to_assign_seconds",
    "A conversation's entry into its group's line (enqueued_at) to its assignment (direct or an accepted offer)",
    ["tenant", "group", "channel"],
    buckets=WAIT_BUCKETS,
)
PLANS_NOT_APPLIED = Counter(
    "sb_router_plans_not_applied_total",
    "Plans of new messages a claim script did not apply as planned: `changed` (the conversation changed since the "
    "router read it: read and planned again) or `stale` (an agent or a group's capacity changed since the "
    "snapshot: queued, snapshot dropped, group drained). Several routers deciding for one shop raise it.",
    ["tenant", "reason"],
)
OFFERS_MISSED = Counter("sb_offers_missed_total", "Offers that timed out or were declined", ["tenant", "group"])
ABANDONED = Counter(
    "sb_abandoned_total", "Conversations whose customer left while waiting", ["tenant", "group", "channel"]
)
BOT_ANSWERED = Counter(
    "sb_bot_answered_total", "Conversations the bot held: answered, or escalated to agents", ["tenant", "outcome"]
)


@dataclass(frozen=True)
class Published:
    """A published decision with the reasons its routing event carried."""

    decision: Decision
    reasons: tuple[str, ...] = ()


def observe(config: TenantRouting, published: Sequence[Published], now_ms: int) -> None:
    """Count and time what the router published for one tenant (its config bounds the labels: a group it does not
    name is "none")."""
    tenant = config.tenant
    groups = {g.name for g in config.skill_groups}
    for item in published:
        d = item.decision
        DECISIONS.labels(d.type, tenant, d.group if d.group in groups else NO_GROUP).inc()
        home_group = d.home or d.group
        home = home_group if home_group in groups else NO_GROUP
        waited_s = max(0.0, (now_ms - d.enq) / 1000) if d.enq else None
        if d.first and waited_s is not None and d.type == "offered":
            TIME_TO_OFFER.labels(tenant, home, channel_label(d.channel)).observe(waited_s)
        elif d.first and waited_s is not None and d.type in ("assigned", "accepted"):
            TIME_TO_ASSIGN.labels(tenant, home, channel_label(d.channel)).observe(waited_s)
        elif d.type in ("timed_out", "declined"):
            OFFERS_MISSED.labels(tenant, home).inc()
        elif d.type == "abandoned":
            ABANDONED.labels(tenant, home, channel_label(d.channel)).inc()
        elif d.type == "answered_by_bot":
            BOT_ANSWERED.labels(tenant, "answered").inc()
        if d.type in ROUTE_DECISIONS and not d.overflow and any(r.startswith(BOT_REASON_PREFIX) for r in item.reasons):
            BOT_ANSWERED.labels(tenant, "escalated").inc()
