"""One authenticated desktop socket on this replica: its send queue, delivery position and writer.

An idle socket holds no task, no event and no queue: the writer task runs only while frames are queued and ends
when the queue is empty (the next frame starts another), and the queue is made on first use. A gateway holds tens
of thousands of mostly idle desk sockets, and these were a quarter of each one's memory
(`python -m switchboard_tools.bench.gateway`)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable

from switchboard.gateway.protocol import CloseCode

Send = Callable[[str], Awaitable[None]]
Close = Callable[[int, str], Awaitable[None]]


class DeskSession:
    """An agent's socket: frames queued for it, the highest seq queued and the highest seq the desktop acked.

    Events enter the queue only from the hub's pump, which never queues more than `queue_max` frames: a slow
    desktop leaves its events in the Redis outbox instead of in this process's memory.
    """

    __slots__ = (
        "_close",
        "_queue",
        "_send",
        "acked",
        "agent_id",
        "check_state",
        "closed",
        "full_since",
        "last_sent",
        "on_drained",
        "queue_max",
        "recovering",
        "session_epoch",
        "tenant_id",
        "trim_requested",
        "writer",
    )

    def __init__(
        self, tenant_id: str, agent_id: str, session_epoch: int, send: Send, close: Close, queue_max: int
    ) -> None:
        self.tenant_id = tenant_id
        self.agent_id = agent_id
        self.session_epoch = session_epoch
        self._send = send
        self._close = close
        self._queue: deque[str] | None = None
        self.queue_max = queue_max
        self.last_sent = 0
        self.acked = 0
        self.trim_requested = 0
        self.closed = False
        # Set when Redis may have lost this desk's state (its seq counter or session): the pump checks it.
        self.check_state = False
        # True while the gateway logs the desk in again (gateway/recovery.py): its epoch in Redis runs ahead of
        # `session_epoch` for a moment, which must not read as "superseded".
        self.recovering = False
        self.full_since: float | None = None
        # Running while frames are queued (see the module docstring); None or done when the queue is empty.
        self.writer: asyncio.Task[None] | None = None
        # Told when a full queue drained to half: the hub then reads the outbox again (DeskHub.register sets it).
        self.on_drained: Callable[[DeskSession], None] | None = None

    @property
    def key(self) -> tuple[str, str]:
        """(tenant, agent): at most one session per key per replica."""
        return (self.tenant_id, self.agent_id)

    @property
    def queue(self) -> deque[str]:
        """Frames waiting for the writer, oldest first."""
        if self._queue is None:
            self._queue = deque()
        return self._queue

    def queued(self) -> int:
        """How many frames wait for the writer."""
        return len(self._queue) if self._queue is not None else 0

    def room(self) -> int:
        """How many more event frames may be queued now."""
        return self.queue_max - self.queued()

    def enqueue(self, seq: int, frame: str) -> None:
        """Queue an event frame (the pump checks `room()` first)."""
        queue = self.queue
        queue.append(frame)
        self.last_sent = seq
        if len(queue) >= self.queue_max and self.full_since is None:
            self.full_since = time.monotonic()
        self._start_writer()

    def _start_writer(self) -> None:
        """Start the writer unless it runs: it takes every frame queued before it ends, in order."""
        if not self.closed and (self.writer is None or self.writer.done()):
            self.writer = asyncio.create_task(self._write(), name="desk-writer")

    def ack(self, seq: int) -> bool:
        """Record the desktop's cumulative ack; True when it moved forward. Acks beyond what was sent are capped."""
        seq = min(seq, self.last_sent)
        if seq <= self.acked:
            return False
        self.acked = seq
        return True

    async def send(self, frame: str) -> bool:
        """Write one frame now (results, errors, the snapshot), outside the event queue; False if the peer is gone.

        A desktop may close while a command is still being recorded (a shift ends with work in hand): writing its
        result then fails. That ends the session quietly instead of raising into the HTTP server.
        """
        if self.closed:
            return False
        try:
            await self._send(frame)
        except Exception:  # the socket is gone (WebSocketDisconnect, ClientDisconnected, a reset connection)
            self.closed = True
            # Whatever else made the write fail, the socket must not linger half-open: closing a gone peer fails fast.
            with contextlib.suppress(Exception):
                await self._close(CloseCode.INTERNAL_ERROR, "send failed")
            return False
        return True

    def offer_ephemeral(self, frame: str) -> bool:
        """Queue a frame without a seq (queue stats) unless the desktop is behind; True when queued.

        Such frames are superseded by the next one, so a socket with a half-full queue simply misses this one:
        they never make a slow desktop slower or take the room its events need.
        """
        if self.closed or self.queued() >= self.queue_max // 2:
            return False
        self.queue.append(frame)
        self._start_writer()
        return True

    async def close(self, code: int, reason: str) -> None:
        """Close the socket with a close code; idempotent."""
        if self.closed:
            return
        self.closed = True
        try:
            await self._close(code, reason)
        except Exception:  # the peer may already be gone; closing is best effort
            return

    async def _write(self) -> None:
        """Write queued frames in order until the queue is empty; tell `on_drained` when a full queue drained to
        half, so the hub reads the outbox again."""
        queue = self.queue
        while queue and not self.closed:
            frame = queue.popleft()
            if not await self.send(frame):
                return
            if self.full_since is not None and len(queue) <= self.queue_max // 2:
                self.full_since = None
                if self.on_drained is not None:
                    self.on_drained(self)
