"""The order lookup (docs/order-lookup.md): an HTTP GET to the shop's order system through the shared lookup
plumbing (runtime/http_lookup.py: a deadline, a circuit breaker per order system, a bounded pool), so a slow or
dead order system costs each conversation at most the lookup timeout and, once the breaker is open, nothing.

Outcomes: `found` (the order's fields), `not_found` (404: the order system works, the customer's order is not
there), `failed` (connection refused, 5xx, an answer that is not the documented JSON), `timeout`, `breaker_open`.
Only `failed` and `timeout` count against the breaker.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import quote

from prometheus_client import Counter, Gauge, Histogram

from switchboard.runtime.http_lookup import CircuitBreaker, HttpLookups, LookupMetrics, Outcome

__all__ = ["ORDER_FIELDS", "CircuitBreaker", "LookupResult", "OrderLookup"]

METRICS = LookupMetrics(
    name="order_lookup",
    lookups=Counter("sb_bot_lookups_total", "Order lookups of the bot by tenant and outcome", ["tenant", "outcome"]),
    seconds=Histogram(
        "sb_bot_lookup_seconds",
        "Duration of order lookups that reached the order system",
        buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5),
    ),
    breaker_state=Gauge(
        "sb_bot_breaker_state", "Order-system circuit breaker: 0 closed, 1 half-open, 2 open", ["order_system"]
    ),
    breaker_opened=Counter("sb_bot_breaker_opened_total", "Times an order system's breaker opened", ["order_system"]),
)
# The fields of an order the templates may use (routing.config.LOOKUP_FIELDS, less the derived status_code).
ORDER_FIELDS = ("order_id", "status", "carrier", "tracking_number", "eta", "shipped_at", "paid_at", "item")


@dataclass(frozen=True)
class LookupResult:
    """What a lookup found: the outcome and, when found, the order's fields as strings."""

    outcome: Outcome
    order: Mapping[str, str] = field(default_factory=dict)
    detail: str = ""


def _order_fields(body: object) -> dict[str, str] | None:
    """The documented fields of an order answer as strings, or None when it is not an order."""
    if not isinstance(body, dict) or not isinstance(body.get("status"), str) or not body.get("order_id"):
        return None
    return {name: str(body[name]) for name in ORDER_FIELDS if body.get(name) not in (None, "")}


class OrderLookup:
    """Looks orders up in the shops' order systems; one HTTP client and one breaker per order system URL."""

    def __init__(self, *, failures: int = 5, cooldown_s: float = 30.0, clock: Callable[[], float] = time.monotonic):
        # The client is made at the first lookup: a router whose tenants have no bot never opens one.
        self._http = HttpLookups(METRICS, failures=failures, cooldown_s=cooldown_s, clock=clock)

    def breaker(self, base_url: str) -> CircuitBreaker:
        """The breaker of one order system."""
        return self._http.breaker(base_url)

    async def close(self) -> None:
        """Close the HTTP connections."""
        await self._http.close()

    async def lookup(
        self, base_url: str, tenant: str, *, order_id: str = "", customer_id: str = "", timeout_s: float
    ) -> LookupResult:
        """The order by id, else the customer's latest order; within `timeout_s` in all, or `timeout`."""
        if order_id:
            path = f"/v1/orders/{quote(order_id, safe='')}"
        else:
            path = f"/v1/customers/{quote(customer_id, safe='')}/orders/latest"
        answer = await self._http.fetch(
            base_url, path, tenant, _order_fields, timeout_s=timeout_s, params={"tenant_id": tenant}
        )
        return LookupResult(answer.outcome, answer.value or {}, answer.detail)
