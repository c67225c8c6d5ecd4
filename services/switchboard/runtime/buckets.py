"""Token buckets: one per connection (chat and phone sockets), and a bounded set of them keyed by sender (the DLQ's
record and byte budgets).

    bucket = TokenBucket(rate=5.0, burst=20)
    if not bucket.take(): ...            # refused: bucket.seconds_to_next() is the hint for the client

    budget = KeyedBuckets(rate=10.0, burst=100, max_keys=10_000)
    if budget.take("shop-a"): ...        # each key has its own bucket
    if sizes.take("shop-a", 512): ...    # a cost of more than one token (bytes)

Neither blocks nor does I/O: a refusal is answered at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class TokenBucket:
    """`rate` tokens a second up to `burst`; `take` spends one or says no."""

    rate: float
    burst: int
    clock: Callable[[], float] = time.monotonic
    tokens: float = field(init=False)
    updated: float = field(init=False)

    def __post_init__(self) -> None:
        self.tokens = float(self.burst)
        self.updated = self.clock()

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(float(self.burst), self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def take(self, cost: float = 1.0) -> bool:
        """Spend `cost` tokens if that many are there (a byte budget spends one per byte)."""
        self._refill()
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False

    def full(self) -> bool:
        """True when the bucket has refilled to its burst: it is then the same as a new one."""
        self._refill()
        return self.tokens >= float(self.burst)

    def seconds_to_next(self) -> float:
        """How long until a token is back (a hint for the refused client)."""
        return 0.0 if self.tokens >= 1.0 else round((1.0 - self.tokens) / self.rate, 2)


class KeyedBuckets:
    """A TokenBucket per key, at most `max_keys` of them.

    Keys may come from outside (a tenant named by a mail's recipient), so the map is bounded: when it is full, the
    buckets that have refilled (the same as new ones) are forgotten; when none has, a new key shares the bucket of
    `overflow_key`, so a sender inventing keys cannot get a fresh burst with each one.
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        max_keys: int = 10_000,
        overflow_key: str = "anonymous",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self.overflow_key = overflow_key
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}

    def take(self, key: str, cost: float = 1.0) -> bool:
        """Spend `cost` tokens of `key`'s bucket if that many are there."""
        return self._bucket(key).take(cost)

    def __len__(self) -> int:
        return len(self._buckets)

    def _bucket(self, key: str) -> TokenBucket:
        bucket = self._buckets.get(key)
        if bucket is not None:
            return bucket
        if len(self._buckets) >= self.max_keys:
            self._buckets = {k: b for k, b in self._buckets.items() if not b.full()}
            if len(self._buckets) >= self.max_keys:
                key = self.overflow_key
                bucket = self._buckets.get(key)
                if bucket is not None:
                    return bucket
        bucket = TokenBucket(self.rate, self.burst, self._clock)
        self._buckets[key] = bucket
        return bucket
