"""Lookups in a shop's own systems over HTTP (its order system, its customer records): one deadline for the
whole call, a circuit breaker per system, a bounded connection pool and Prometheus metrics, so a slow or dead
system costs each caller at most the timeout and, once its breaker is open, nothing at all.

Outcomes: `found` (the parsed answer), `not_found` (404: the system works, the thing is not there), `failed`
(connection refused, 5xx, an answer `parse` does not accept), `timeout`, `breaker_open`. Only `failed` and
`timeout` count against the breaker. The router's order lookup (router/bot_lookup.py, docs/order-lookup.md) and
the adapters' customer lookup (intake/customers.py, docs/customer-lookup.md) both go through here.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

import aiohttp
from prometheus_client import Counter, Gauge, Histogram

from switchboard.runtime.http_client import shared_session
from switchboard.runtime.logs import get_logger

log = get_logger(__name__)

T = TypeVar("T")
Outcome = Literal["found", "not_found", "failed", "timeout", "breaker_open"]
BreakerState = Literal["closed", "half_open", "open"]
_STATE_VALUE = {"closed": 0, "half_open": 1, "open": 2}
ACCEPT_JSON = {"accept": "application/json"}


@dataclass(frozen=True)
class LookupMetrics:
    """The metrics of one kind of lookup: lookups by (tenant, outcome), seconds of answered lookups, and each
    system's breaker (state by system, times opened by system); `name` names it in logs ("order_lookup")."""

    name: str
    lookups: Counter
    seconds: Histogram
    breaker_state: Gauge
    breaker_opened: Counter


@dataclass
class CircuitBreaker:
    """Opens after `failures` failed lookups in a row; after `cooldown_s` one trial lookup is let through
    (half-open): success closes it, failure opens it for another cool-down."""

    name: str
    failures: int = 5
    cooldown_s: float = 30.0
    clock: Callable[[], float] = time.monotonic
    metrics: LookupMetrics | None = None
    state: BreakerState = "closed"
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
        """The system answered (found or not found)."""
        self._failed, self._trial = 0, False
        if self.state != "closed":
            self._set("closed")

    def failed(self) -> None:
        """The system failed or did not answer in time."""
        self._failed += 1
        self._trial = False
        if self.state == "half_open" or self._failed >= self.failures:
            self._opened_at = self.clock()
            if self.state != "open":
                if self.metrics is not None:
                    self.metrics.breaker_opened.labels(self.name).inc()
                log.warning(f"{self._kind}_breaker_open", system=self.name, failures=self._failed)
            self._set("open")

    @property
    def _kind(self) -> str:
        return self.metrics.name if self.metrics is not None else "lookup"

    def _set(self, state: BreakerState) -> None:
        self.state = state
        if self.metrics is not None:
            self.metrics.breaker_state.labels(self.name).set(_STATE_VALUE[state])


@dataclass(frozen=True)
class Answer(Generic[T]):
    """What a lookup got: the outcome and, when found, the parsed answer."""

    outcome: Outcome
    value: T | None = None
    detail: str = ""


@dataclass
class HttpLookups:
    """One breaker per system base URL, for one kind of lookup, over the process's HTTP client
    (runtime/http_client.py: at most `PER_HOST` connections per system; a lookup waiting for a free one waits
    within its timeout)."""

    metrics: LookupMetrics
    failures: int = 5
    cooldown_s: float = 30.0
    clock: Callable[[], float] = time.monotonic
    _breakers: dict[str, CircuitBreaker] = field(default_factory=dict)

    def breaker(self, base_url: str) -> CircuitBreaker:
        """The breaker of one system."""
        found = self._breakers.get(base_url)
        if found is None:
            found = CircuitBreaker(base_url, self.failures, self.cooldown_s, self.clock, self.metrics)
            self._breakers[base_url] = found
            self.metrics.breaker_state.labels(base_url).set(0)
        return found

    async def close(self) -> None:
        """Nothing of its own to close: the process's HTTP client is closed by ServiceRuntime."""

    async def fetch(
        self,
        base_url: str,
        path: str,
        tenant: str,
        parse: Callable[[object], T | None],
        *,
        timeout_s: float,
        params: Mapping[str, str] | None = None,
        json_body: Mapping[str, Any] | None = None,
    ) -> Answer[T]:
        """GET (or POST `json_body`) `base_url + path` within `timeout_s` in all; `parse` turns a 200's JSON into
        the answer, or None when it is not one (a failure)."""
        breaker = self.breaker(base_url)
        if not breaker.allow():
            return self._count(tenant, Answer[T]("breaker_open"))
        url = base_url.rstrip("/") + path
        started = time.perf_counter()
        method = "GET" if json_body is None else "POST"
        body = None if json_body is None else dict(json_body)
        try:
            async with asyncio.timeout(timeout_s):
                async with shared_session().request(
                    method, url, params=params, json=body, headers=ACCEPT_JSON, allow_redirects=False
                ) as response:
                    status, text = response.status, await response.text(errors="replace")
        except TimeoutError:
            breaker.failed()
            return self._count(tenant, Answer[T]("timeout", detail=f"no answer within {timeout_s}s"))
        except aiohttp.ClientError as exc:
            breaker.failed()
            return self._count(tenant, Answer[T]("failed", detail=repr(exc)))
        self.metrics.seconds.observe(time.perf_counter() - started)
        return self._count(tenant, _answer(breaker, status, text, parse))

    def _count(self, tenant: str, answer: Answer[T]) -> Answer[T]:
        self.metrics.lookups.labels(tenant, answer.outcome).inc()
        if answer.outcome not in ("found", "not_found"):
            log.info(f"{self.metrics.name}_unanswered", tenant=tenant, outcome=answer.outcome, detail=answer.detail)
        return answer


def _answer(breaker: CircuitBreaker, status: int, text: str, parse: Callable[[object], T | None]) -> Answer[T]:
    if status == 404:
        breaker.succeeded()
        return Answer("not_found")
    value = None
    if status == 200:
        try:
            value = parse(json.loads(text))
        except ValueError:
            value = None
    if value is None:
        breaker.failed()
        return Answer("failed", detail=f"HTTP {status}: {text[:200]}")
    breaker.succeeded()
    return Answer("found", value)
