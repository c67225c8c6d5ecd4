"""The replica's desk hub: which agents have a socket here, and moving their outbox events onto those sockets.

One pub/sub pattern subscription per replica hears every "agent_id seq" notification; a notification for an agent
with a socket here marks that socket dirty, and one pump reads the outboxes of all dirty sockets with pipelined
XRANGEs (hundreds of sockets per Redis round trip). No Redis call waits per socket, so 20,000 sockets cost one
subscription and a few round trips per batch of events, not 20,000 blocking reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Coroutine
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import Connection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from switchboard.gateway.metrics import DESK_SOCKETS, EVENTS_SENT, SOCKETS_STALLED
from switchboard.gateway.protocol import CloseCode, event_frame
from switchboard.gateway.session import DeskSession
from switchboard.gateway.settings import GatewaySettings
from switchboard.gateway.trim import Trimmer
from switchboard.runtime.logs import get_logger
from switchboard.runtime.redis_client import prepare_pubsub
from switchboard.state.keys import Keys
from switchboard.state.outbox import outbox_event

log = get_logger(__name__)

SESSION_PREFIX = "session:"


class DeskHub:
    """Sessions of this replica, the notification listener, the outbox pump and the reconcile sweep."""

    def __init__(self, redis: Redis, keys: Keys, settings: GatewaySettings) -> None:
        self.redis = redis
        self.keys = keys
        self.settings = settings
        self.sessions: dict[tuple[str, str], DeskSession] = {}
        self._dirty: dict[DeskSession, None] = {}
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self.trimmer = Trimmer(redis, keys, settings)
        self.listening = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._listener: asyncio.Task[Any] | None = None
        self._pubsub_connection: Connection | None = None
        self.awaiting_pong = False
        # Called with a session whose state Redis lost (its seq counter below what it was sent, or its session
        # epoch gone or older): the gateway logs it in again and re-snapshots it (gateway/recovery.py).
        self.on_lost: Callable[[DeskSession], None] | None = None

    @property
    def stopping(self) -> asyncio.Event:
        """Set when the replica shuts down: the hub's loops (and the queue stats ticker) end."""
        return self._stopping

    # --- sessions ---------------------------------------------------------------------------------------------

    def register(self, session: DeskSession) -> DeskSession | None:
        """Add a session; returns the older session of the same agent on this replica, which the caller closes."""
        older = self.sessions.get(session.key)
        self.sessions[session.key] = session
        DESK_SOCKETS.set(len(self.sessions))
        session.on_drained = self.mark_dirty
        self.mark_dirty(session)
        return older

    def unregister(self, session: DeskSession) -> None:
        """Forget a session (its socket ended); its acks are trimmed one last time."""
        if self.sessions.get(session.key) is session:
            del self.sessions[session.key]
        self._dirty.pop(session, None)
        DESK_SOCKETS.set(len(self.sessions))
        session.closed = True
        self.trimmer.request(session, final=True)

    def mark_dirty(self, session: DeskSession) -> None:
        """The session may have unread outbox events: the pump will read them."""
        if not session.closed:
            self._dirty[session] = None
            self._wake.set()

    def acked(self, session: DeskSession, seq: int) -> None:
        """The desktop acked up to `seq`: trim its outbox now and then."""
        if session.ack(seq) and session.acked - session.trim_requested >= self.settings.trim_every:
            self.trimmer.request(session)

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run a coroutine in the background, keeping a reference until it is done."""
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def stop(self) -> None:
        """Stop listening and pumping (shutdown)."""
        self._stopping.set()
        self._wake.set()
        self.trimmer.stop()
        if self._listener is not None and not self._listener.done():
            self._listener.cancel()

    # --- notifications ------------------------------------------------------------------------------------------

    def on_notify(self, channel: bytes, data: bytes) -> None:
        """An "agent_id seq" (or "agent_id session:<epoch>") notification on a tenant's desk-notify channel."""
        tenant = self.keys.desk_notify_tenant(channel.decode())
        agent, _, value = data.decode().partition(" ")
        session = self.sessions.get((tenant, agent)) if tenant else None
        if session is None:
            return
        session_notice = value.startswith(SESSION_PREFIX)
        try:
            number = int(value[len(SESSION_PREFIX) :] if session_notice else value)
        except ValueError:
            log.warning("desk_notify_malformed", channel=channel.decode(), data=data.decode())
            return
        if session_notice:
            if number > session.session_epoch and not session.recovering:
                self.spawn(session.close(CloseCode.SUPERSEDED, "a newer session of this agent logged in"))
        elif number > session.last_sent:
            self.mark_dirty(session)
        elif number < session.last_sent:
            # Usually the pump read ahead of this notification; after Redis lost the seq counter it is a new event
            # under an old seq. The pump tells them apart by reading the counter.
            session.check_state = True
            self.mark_dirty(session)

    async def run_listener(self) -> None:
        """Hold the replica's one pattern subscription; after a reconnect every session is re-read."""
        self._listener = asyncio.current_task()
        pattern = self.keys.desk_notify_pattern()
        while not self._stopping.is_set():
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await prepare_pubsub(self.redis)
                await pubsub.psubscribe(pattern)
                self.listening = True
                for session in list(self.sessions.values()):
                    # notifications may have been lost while not subscribed, and a Redis that restarted may have
                    # lost the desks' state: the pump reads the events and checks the state
                    session.check_state = True
                    self.mark_dirty(session)
                self._pubsub_connection, self.awaiting_pong = pubsub.connection, False
                await self._listen(pubsub.connection)
            except (RedisError, OSError) as exc:
                log.warning("desk_notify_lost", error=repr(exc))
                await asyncio.sleep(0.5)
            finally:
                self.listening = False
                self._pubsub_connection = None
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _listen(self, connection: Connection | None) -> None:
        """Read notifications straight off the subscribed connection.

        This is the hottest loop of the gateway (one message per desk event): PubSub.get_message wraps every read
        in a retry helper and a timeout, which costs more than the rest of the delivery. `stop()` cancels the
        blocking read; a dead connection raises and the caller subscribes again.
        """
        if connection is None:
            raise RedisConnectionError("pub/sub connection missing after subscribe")
        while not self._stopping.is_set():
            # math.inf: not the client's socket_timeout; push_request: a message is an answer, not a push to skip.
            response = await connection.read_response(timeout=math.inf, push_request=True)
            if isinstance(response, list) and len(response) == 4 and response[0] == b"pmessage":
                self.on_notify(response[2], response[3])
            elif response == b"PONG" or (isinstance(response, list) and response and response[0] == b"pong"):
                self.awaiting_pong = False  # RESP3 answers a subscribed PING with PONG, RESP2 with ["pong", ""]

    async def check_subscription(self) -> None:
        """PING the subscribed connection; if the last PING got no PONG, drop it so the listener subscribes again.

        A half-open TCP connection (a network partition, a Redis failover) would otherwise leave the blocking read
        waiting forever while the replica hears nothing.
        """
        connection = self._pubsub_connection
        if connection is None:
            return
        if self.awaiting_pong:
            log.warning("desk_notify_silent", detail="no PONG on the subscription; subscribing again")
            await connection.disconnect()
            return
        self.awaiting_pong = True
        await connection.send_command("PING", check_health=False)  # a health check would read concurrently

    # --- the pump -----------------------------------------------------------------------------------------------

    async def run_pump(self) -> None:
        """Read the outboxes of dirty sessions in pipelined rounds and queue their events."""
        while not self._stopping.is_set():
            await self._wake.wait()
            self._wake.clear()
            while self._dirty and not self._stopping.is_set():
                batch = self._take_round()
                if not batch:
                    break
                try:
                    await self._read_round(batch)
                except (RedisError, OSError) as exc:
                    log.warning("outbox_read_failed", error=repr(exc), sockets=len(batch))
                    for session in batch:
                        self.mark_dirty(session)
                    await asyncio.sleep(0.2)

    def _take_round(self) -> list[DeskSession]:
        batch: list[DeskSession] = []
        while self._dirty and len(batch) < self.settings.pump_sockets_per_round:
            session = next(iter(self._dirty))
            del self._dirty[session]
            if session.closed:
                continue
            if session.room() <= 0:
                continue  # stalled: its writer marks it dirty again once the queue drained
            batch.append(session)
        return batch

    async def _read_round(self, batch: list[DeskSession]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        counts = []
        checked = [s for s in batch if s.check_state]
        for session in checked:
            session.check_state = False
            pipe.get(self.keys.desk_seq(session.tenant_id, session.agent_id))
            pipe.hget(self.keys.agent(session.tenant_id, session.agent_id), "session_epoch")
        for session in batch:
            count = min(session.room(), self.settings.outbox_batch)
            counts.append(count)
            outbox = self.keys.desk_outbox(session.tenant_id, session.agent_id)
            pipe.xrange(outbox, min=f"({session.last_sent}-1", max="+", count=count)
        results = await pipe.execute()
        for i, session in enumerate(checked):
            self.state_lost(session, int(results[2 * i] or 0), int(results[2 * i + 1] or 0))
        results = results[2 * len(checked) :]
        for session, count, entries in zip(batch, counts, results, strict=True):
            if session.closed or not entries:
                continue
            self._deliver(session, entries)
            if len(entries) >= count:
                self.mark_dirty(session)

    def _deliver(self, session: DeskSession, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        sent = 0
        for entry_id, fields in entries:
            seq = int(entry_id.split(b"-", 1)[0])
            if seq <= session.last_sent:
                continue
            if seq != session.last_sent + 1 and session.last_sent > 0:
                # Events the desktop never got were cut from the outbox (MAXLEN): it must take a new snapshot.
                self.spawn(session.close(CloseCode.RESYNC, "events were dropped; reconnect for a snapshot"))
                return
            event = outbox_event(entry_id, fields)
            session.enqueue(seq, event_frame(event))
            sent += 1
        EVENTS_SENT.inc(sent)

    def state_lost(self, session: DeskSession, seq: int, epoch: int) -> bool:
        """True (and the gateway told) when Redis lost the session's state: its seq counter is below what the desk
        was sent, or its session epoch is gone or older than the desk's."""
        if session.recovering:
            return True  # being logged in again: the recovery sends what the desk needs
        if session.closed or (seq >= session.last_sent and epoch >= session.session_epoch):
            return False
        log.warning(
            "desk_state_lost",
            tenant_id=session.tenant_id,
            agent_id=session.agent_id,
            seq=seq,
            sent=session.last_sent,
            epoch=epoch,
            session_epoch=session.session_epoch,
        )
        if self.on_lost is not None:
            self.on_lost(session)
        return True

    # --- reconcile --------------------------------------------------------------------------------------------

    async def run_reconcile(self, clock: Callable[[], float] = time.monotonic) -> None:
        """Every reconcile interval: catch events whose notification was lost, close fenced and stuck sockets."""
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.settings.reconcile_interval_s)
            if self._stopping.is_set():
                return
            try:
                await self.check_subscription()
                await self.reconcile(clock())
            except (RedisError, OSError) as exc:
                log.warning("reconcile_failed", error=repr(exc))

    async def reconcile(self, now: float) -> None:
        """Compare every session with its seq counter and session epoch in Redis, 1,000 sockets per round trip."""
        sessions = list(self.sessions.values())
        SOCKETS_STALLED.set(sum(1 for s in sessions if s.full_since is not None))
        for start in range(0, len(sessions), 1000):
            chunk = sessions[start : start + 1000]
            pipe = self.redis.pipeline(transaction=False)
            for s in chunk:
                pipe.get(self.keys.desk_seq(s.tenant_id, s.agent_id))
                pipe.hget(self.keys.agent(s.tenant_id, s.agent_id), "session_epoch")
            values = await pipe.execute()
            for i, session in enumerate(chunk):
                seq, epoch = int(values[2 * i] or 0), int(values[2 * i + 1] or 0)
                if self.state_lost(session, seq, epoch):
                    continue
                if epoch > session.session_epoch:
                    await session.close(CloseCode.SUPERSEDED, "a newer session of this agent logged in")
                elif session.full_since is not None and now - session.full_since > self.settings.slow_close_s:
                    await session.close(CloseCode.TOO_SLOW, "the desktop did not read its events")
                elif seq > session.last_sent:
                    self.mark_dirty(session)
