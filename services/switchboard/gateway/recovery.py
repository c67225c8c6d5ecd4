"""Desks that outlive their state: Redis lost an agent's session or desk outbox while its desktop stayed connected.

After Redis restarted empty (or came back without its last writes) a connected desk's session epoch may be gone or
older than the desk's, and its outbox seq counter may be behind what the desk was sent: new events would reuse seqs
the desk already has. The hub notices (its pub/sub subscription comes back, a notification names a seq below what
the socket was sent, a heartbeat is answered "stale" with an older epoch, the reconcile sweep) and calls `recover`:

1. the seq counter is raised to at least what the desk was sent (the desk's seq never goes backwards);
2. the agent is logged in again on the desk's behalf, with an epoch above the desk's (no 4005, no new token): while
   presence has not rebuilt the agent yet (docs/state.md, "When Redis loses its data") this is retried with backoff
   for `SB_RELOGIN_WAIT_S`, after which the socket is closed 4012 (log in again);
3. a fresh snapshot (`resumed: false`) replaces the desk's state; events follow from its `as_of_seq`.
"""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from switchboard.gateway.hub import SESSION_PREFIX, DeskHub
from switchboard.gateway.metrics import DESK_RECOVERIES
from switchboard.gateway.protocol import CloseCode
from switchboard.gateway.session import DeskSession
from switchboard.gateway.settings import GatewaySettings
from switchboard.gateway.snapshot import build_snapshot
from switchboard.runtime.logs import get_logger
from switchboard.runtime.lua import LuaScript
from switchboard.state.agents import PresenceStore, UnknownAgent
from switchboard.state.keys import Keys

log = get_logger(__name__)

DESK_SEQ_FLOOR = LuaScript.load(__file__, "desk_seq_floor")


class DeskRecovery:
    """Logs desks in again and re-snapshots them after Redis lost their session or outbox; one at a time per desk."""

    def __init__(
        self, redis: Redis, keys: Keys, presence: PresenceStore, hub: DeskHub, settings: GatewaySettings
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.presence = presence
        self.hub = hub
        self.settings = settings

    def lost(self, session: DeskSession) -> None:
        """The hub's callback: recover the session in the background."""
        if not session.recovering and not session.closed:
            self.hub.spawn(self._recover_logged(session))

    async def _recover_logged(self, session: DeskSession) -> None:
        try:
            await self.recover(session)
        except Exception as exc:  # Redis away again: the next check tries again
            log.warning("desk_recovery_failed", tenant_id=session.tenant_id, agent_id=session.agent_id, error=repr(exc))

    async def recover(self, session: DeskSession) -> bool:
        """Raise the seq counter, log the agent in again and send a fresh snapshot; False when the socket was closed
        instead. A recovery of the session already running is left to finish (True)."""
        if session.recovering:
            return True
        session.recovering = True
        try:
            return await self._recover(session)
        finally:
            session.recovering = False

    async def _recover(self, session: DeskSession) -> bool:
        tenant, agent = session.tenant_id, session.agent_id
        await DESK_SEQ_FLOOR(self.redis, keys=[self.keys.desk_seq(tenant, agent)], args=[session.last_sent])
        epoch = await self._login_again(session)
        if epoch is None:
            DESK_RECOVERIES.labels("gave_up").inc()
            await session.close(CloseCode.SESSION_ENDED, "the agent's session was lost; log in again")
            return False
        previous, session.session_epoch = session.session_epoch, epoch  # before the notice, which would fence it
        await self.redis.publish(self.keys.desk_notify(tenant), f"{agent} {SESSION_PREFIX}{epoch}")
        snapshot = await build_snapshot(
            self.redis, self.keys, tenant, agent, None, self.settings.snapshot_messages, epoch
        )
        # Frames still queued belong to the state the snapshot replaces.
        session.queue.clear()
        session.full_since = None
        session.last_sent = session.acked = session.trim_requested = snapshot.as_of_seq
        if not await session.send(snapshot.frame):
            return False
        self.hub.mark_dirty(session)
        DESK_RECOVERIES.labels("recovered").inc()
        log.warning(
            "desk_recovered",
            tenant_id=tenant,
            agent_id=agent,
            session_epoch=epoch,
            previous_epoch=previous,
            as_of_seq=snapshot.as_of_seq,
        )
        return True

    async def _login_again(self, session: DeskSession) -> int | None:
        """A new session epoch above the desk's; None when presence does not know the agent within the wait."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.relogin_wait_s
        delay = 0.25
        while not session.closed:
            try:
                return await self.presence.login(
                    session.tenant_id,
                    session.agent_id,
                    gateway_instance=self.settings.instance_id,
                    after_epoch=session.session_epoch,
                    changed_by="gateway",
                )
            except UnknownAgent:
                # presence has not rebuilt the agent yet (or it was removed meanwhile)
                if loop.time() + delay > deadline:
                    return None
                DESK_RECOVERIES.labels("waiting").inc()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 4.0)
        return None
