"""The order lookup (docs/order-lookup.md): an HTTP GET to the shop's order system, with a deadline and a circuit
breaker per order system, so a slow or dead one costs each conversation at most the lookup timeout and, once the
breaker is open, nothing at all.

Outcomes: `found` (the order's fields), `not_found` (404: the order system works, the customer's order is not
there), `failed` (connection refused, 5xx, an answer that is not the documented JSON), `timeout`, `breaker_open`.
Only `failed` and `timeout` count against the breaker.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import quote

import httpx
from prometheus_client import Counter, Gauge, Histogram

from switchboard.runtime.logs import get_logger

log = get_logger(__name__)

LOOKUPS = Counter("sb_bot_lookups_total", "Order lookups of the bot by tenant and outcome", ["tenant", "outcome"])
LOOKUP_SECONDS = Histogram(
    "sb_bot_lookup_seconds",
    "Duration of order lookups that reached the order system",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5),
)
BREAKER_STATE = Gauge(
    "sb_bot_breaker_state", "Order-system circuit breaker: 0 closed, 1 half-open, 2 open", ["order_system"]
)
BREAKER_OPENED = Counter("sb_bot_breaker_opened_total", "Times an order system's breaker opened", ["order_system"])

Outcome = Literal["found", "not_found", "failed", "timeout", "breaker_open"]
# The fields of an order the templates may use (routing.config.LOOKUP_FIELDS, less the derived status_code).
ORDER_FIELDS = ("order_id", "status", "carrier", "tracking_number", "eta", "shipped_at", "paid_at", "item")
_STATE_VALUE = {"closed": 0, "half_open": 1, "open": 2}


@dataclass(frozen=True)
class LookupResult:
    """What a lookup found: the outcome and, when found, the order's fields as strings."""

    outcome: Outcome
    order: Mapping[str, str] = field(default_factory=dict)
    detail: str = ""


@dataclass
class CircuitBreaker:
    """Opens after `failures` failed lookups in a row; after `cooldown_s` one trial lookup is let through
    (half-open): success closes it, failure opens it for another cool-down."""

    name: str
    failures: int = 5
    cooldown_s: float = 30.0
    clock: Callable[[], float] = time.monotonic
    state: Literal["closed", "half_open", "open"] = "closed"
    _failed: int = 0
    _opened_at: float = 0.0
    _trial: bool = False

    def allow(self) -> bool:
        """May a lookup go out now? (In half-open, only one at a time.)"""
        if self.state == "open" and self.clock() - self._opened_at >= self.cooldown_s:
            self._set("half_open")
        if self.state == "closed":
            return True
        if self.state == "half_open" and not self._trial:
            self._trial = True
            return True
        return False

    def succeeded(self) -> None:
        """The order system answered (found or not found)."""
        self._failed, self._trial = 0, False
        if self.state != "closed":
            self._set("closed")

    def failed(self) -> None:
        """The order system failed or did not answer in time."""
        self._failed += 1
        self._trial = False
        if self.state == "half_open" or self._failed >= self.failures:
            self._opened_at = self.clock()
            if self.state != "open":
                BREAKER_OPENED.labels(self.name).inc()
                log.warning("order_lookup_breaker_open", order_system=self.name, failures=self._failed)
            self._set("open")

    def _set(self, state: Literal["closed", "half_open", "open"]) -> None:
        self.state = state
        BREAKER_STATE.labels(self.name).set(_STATE_VALUE[state])


def _order_fields(body: object) -> dict[str, str] | None:
    """The documented fields of an order answer as strings, or None when it is not an order."""
    if not isinstance(body, dict) or not isinstance(body.get("status"), str) or not body.get("order_id"):
        return None
    return {name: str(body[name]) for name in ORDER_FIELDS if body.get(name) not in (None, "")}


class OrderLookup:
    """Looks orders up in the shops' order systems; one HTTP client and one breaker per order system URL."""

    def __init__(self, *, failures: int = 5, cooldown_s: float = 30.0, clock: Callable[[], float] = time.monotonic):
        # Made at the first lookup: a router whose tenants have no bot never opens one.
        self._client: httpx.AsyncClient | None = None
        self._breakers: dict[str, CircuitBreaker] = {}
        self._failures, self._cooldown_s, self._clock = failures, cooldown_s, clock

    def breaker(self, base_url: str) -> CircuitBreaker:
        """The breaker of one order system."""
        found = self._breakers.get(base_url)
        if found is None:
            found = self._breakers[base_url] = CircuitBreaker(base_url, self._failures, self._cooldown_s, self._clock)
            BREAKER_STATE.labels(base_url).set(0)
        return found

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            # The pool bounds connections per order system; waiting for one counts against the lookup's timeout.
            limits = httpx.Limits(max_connections=100, max_keepalive_connections=50)
            self._client = httpx.AsyncClient(
                headers={"accept": "application/json"}, follow_redirects=False, limits=limits
            )
        return self._client

    async def close(self) -> None:
        """Close the HTTP connections."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def lookup(
        self, base_url: str, tenant: str, *, order_id: str = "", customer_id: str = "", timeout_s: float
    ) -> LookupResult:
        """The order by id, else the customer's latest order; within `timeout_s` in all, or `timeout`."""
        if order_id:
            path = f"/v1/orders/{quote(order_id, safe='')}"
        else:
            path = f"/v1/customers/{quote(customer_id, safe='')}/orders/latest"
        breaker = self.breaker(base_url)
        if not breaker.allow():
            return self._count(tenant, LookupResult("breaker_open"))
        started = time.perf_counter()
        try:
            async with asyncio.timeout(timeout_s):
                response = await self._http().get(base_url.rstrip("/") + path, params={"tenant_id": tenant})
        except TimeoutError:
            breaker.failed()
            return self._count(tenant, LookupResult("timeout", detail=f"no answer within {timeout_s}s"))
        except httpx.HTTPError as exc:
            breaker.failed()
            return self._count(tenant, LookupResult("failed", detail=repr(exc)))
        LOOKUP_SECONDS.observe(time.perf_counter() - started)
        return self._count(tenant, self._answer(breaker, response))

    @staticmethod
    def _answer(breaker: CircuitBreaker, response: httpx.Response) -> LookupResult:
        if response.status_code == 404:
            breaker.succeeded()
            return LookupResult("not_found")
        order = None
        if response.status_code == 200:
            try:
                order = _order_fields(response.json())
            except ValueError:
                order = None
        if order is None:
            breaker.failed()
            return LookupResult("failed", detail=f"HTTP {response.status_code}: {response.text[:200]}")
        breaker.succeeded()
        return LookupResult("found", order)

    @staticmethod
    def _count(tenant: str, result: LookupResult) -> LookupResult:
        LOOKUPS.labels(tenant, result.outcome).inc()
        if result.outcome not in ("found", "not_found"):
            log.info("order_lookup_unanswered", tenant=tenant, outcome=result.outcome, detail=result.detail)
        return result
