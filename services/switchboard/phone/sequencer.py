"""Writing a call's final segments in seq order when they arrive out of order.

A group of final segments waits until every lower seq of its call was written (next_seq reached its first seq),
or until the reorder window ran out: then the gap is skipped, and a lower seq that still arrives is written
afterwards, marked out_of_order. The waiting is in memory, so a call's live traffic should reach one replica
(a websocket does; HTTP batches are routed by call id, see docs/phone-api.md); next_seq itself lives in Redis,
so a restarted or different replica continues where the last one stopped.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

MAX_CALLS = 20_000


class CallTurn:
    """The in-memory next_seq of one call and the deliveries waiting for it."""

    def __init__(self, next_seq: int) -> None:
        self.next_seq = next_seq
        self.changed = asyncio.Condition()
        self.waiting = 0  # deliveries waiting for a predecessor right now (tests and debugging look at it)

    async def wait_for(self, seq: int, window_s: float) -> bool:
        """Wait until next_seq >= seq; False when the window ran out first (the gap will be skipped)."""
        deadline = time.monotonic() + window_s
        async with self.changed:
            self.waiting += 1
            try:
                while self.next_seq < seq:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    try:
                        await asyncio.wait_for(self.changed.wait(), left)
                    except TimeoutError:
                        return self.next_seq >= seq
            finally:
                self.waiting -= 1
        return True

    async def advance(self, next_seq: int) -> None:
        """Every seq below next_seq is written: wake the waiters."""
        async with self.changed:
            if next_seq > self.next_seq:
                self.next_seq = next_seq
                self.changed.notify_all()


class Sequencer:
    """Per-call turns, created from the call's next_seq in Redis on first use and forgotten least recently used."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._turns: OrderedDict[tuple[str, str], CallTurn] = OrderedDict()

    def waiting(self, tenant_id: str, call_id: str) -> int:
        """How many deliveries of a call wait for a predecessor."""
        turn = self._turns.get((tenant_id, call_id))
        return turn.waiting if turn else 0

    async def turn(self, tenant_id: str, call_id: str, load: Callable[[], Awaitable[int]]) -> CallTurn:
        """The call's turn object (loading next_seq with `load` the first time)."""
        key = (tenant_id, call_id)
        turn = self._turns.get(key)
        if turn is None:
            loaded = await load()
            turn = self._turns.get(key)  # another delivery may have made it while we awaited
            if turn is None:
                turn = self._turns[key] = CallTurn(loaded)
        self._turns.move_to_end(key)
        while len(self._turns) > MAX_CALLS:
            self._turns.popitem(last=False)
        return turn
