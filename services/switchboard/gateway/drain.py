"""Moving a replica's desks to the other replicas gradually when it shuts down (SIGTERM: a deploy, a scale-in, a
node drain).

Closing 20,000 sockets at once sends 20,000 reconnects, logins and snapshots to the other replicas in the same
second. The drain closes them with 1012 (service restart: the desk reconnects at once, to any replica, with
`resume_after`) in even steps over `SB_DESK_DRAIN_S`, never slower than `SB_DESK_DRAIN_MIN_RATE` sockets a second
(a handful of desks need not wait out the window). It starts when `/readyz` already answers 503, so the Service
sends the reconnects elsewhere; a socket that still arrives here meanwhile is closed with 1012 at once
(`refuse_if_draining`). Until its turn a desk keeps working: the pump, the commands and the replies all run
(docs/desktop-protocol.md §3, "Draining").
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

from switchboard.gateway.hub import DeskHub
from switchboard.gateway.protocol import CloseCode
from switchboard.gateway.session import DeskSession
from switchboard.runtime.logs import get_logger

log = get_logger(__name__)

DRAIN_REASON = "gateway draining; reconnect"
# Sockets are closed in steps this far apart: smooth enough, and few wake-ups.
STEP_S = 0.1


def drain_rate(sockets: int, window_s: float, min_rate: float) -> float:
    """Sockets to close per second: all of them within the window, at least `min_rate` (inf: all at once)."""
    if window_s <= 0 or sockets == 0:
        return math.inf
    return max(sockets / window_s, min_rate)


class DeskDrain:
    """Closes a replica's desk sockets over a window; `draining` refuses new ones meanwhile."""

    def __init__(
        self, hub: DeskHub, window_s: float, min_rate: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.hub = hub
        self.window_s = window_s
        self.min_rate = min_rate
        self.clock = clock
        self.draining = False

    async def run(self) -> None:
        """Close every open desk socket with 1012, paced; returns when none is left (or the window is over)."""
        self.draining = True
        sockets = len(self.hub.sessions)
        rate = drain_rate(sockets, self.window_s, self.min_rate)
        log.info("desk_drain_started", sockets=sockets, window_s=self.window_s, per_second=round(rate, 1))
        start = self.clock()
        closed = 0
        # A little past the window, in case closes ran late; what is left then goes with the shutdown's 1012.
        deadline = start + self.window_s + 1.0
        while self._open() and self.clock() < deadline:
            due = len(self.hub.sessions) if math.isinf(rate) else math.ceil((self.clock() - start) * rate) + 1
            for session in self._open()[: max(0, due - closed)]:
                self.hub.spawn(session.close(CloseCode.SERVICE_RESTART, DRAIN_REASON))
                closed += 1
            await asyncio.sleep(STEP_S)
        log.info("desk_drain_done", closed=closed, left=len(self._open()), seconds=round(self.clock() - start, 2))

    def _open(self) -> list[DeskSession]:
        return [session for session in self.hub.sessions.values() if not session.closed]
