"""Roster reloads without restart (polling the file's mtime) and agent counts for dashboards.

A changed roster that fails validation is logged and the agents stay as they were; a valid one is loaded like at
start (profiles written, agents the file no longer lists removed). Every replica may reload: the profile scripts
change an agent once, so only the first replica publishes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

from pydantic import ValidationError

from switchboard.presence.audit import AuditLog
from switchboard.presence.metrics import AGENTS, ROSTER_RELOADS
from switchboard.runtime.logs import get_logger
from switchboard.state.agent_model import text
from switchboard.state.agents import PresenceStore
from switchboard.state.metrics import LabelBounds
from switchboard.state.roster import load_roster

log = get_logger(__name__)

STATUSES = ("available", "busy", "away", "wrap_up", "offline")


class RosterWatcher:
    """Reloads the roster when its file changes, and refreshes the `sb_presence_agents` gauge."""

    def __init__(
        self,
        store: PresenceStore,
        path: Path | None,
        interval_s: float,
        audit: AuditLog | None = None,
        configured: Callable[[], set[str]] = set,
        roster_tenants: Iterable[str] = (),
    ) -> None:
        self.store = store
        # The tenants whose `sb_presence_agents` label is their own id: the routing configs' (`configured`) and
        # those of the roster loaded last; any other tenant presence keeps agents for is counted as "unknown".
        self.configured = configured
        self.roster_tenants = set(roster_tenants)
        self.audit = audit
        self.path = path
        self.interval_s = interval_s
        self._mtime: float | None = path.stat().st_mtime if path and path.exists() else None
        self._stop = asyncio.Event()

    def stop(self) -> None:
        """Stop after the current round."""
        self._stop.set()

    async def run(self) -> None:
        """Poll until stopped; failures are logged and retried next round."""
        while not self._stop.is_set():
            try:
                await self.poll()
                await self.count_agents()
            except Exception as exc:  # Redis away: try again next round, never die
                log.warning("roster_watch_failed", error=repr(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.interval_s)

    async def poll(self) -> bool:
        """Reload if the file changed since the last look; True when a new roster was loaded."""
        if self.path is None:
            return False
        try:
            mtime = self.path.stat().st_mtime
        except OSError as exc:
            log.warning("roster_unreadable", path=str(self.path), error=repr(exc))
            return False
        if mtime == self._mtime:
            return False
        self._mtime = mtime
        try:
            roster = load_roster(self.path)
        except (OSError, ValueError, ValidationError) as exc:
            ROSTER_RELOADS.labels("invalid").inc()
            log.error("roster_invalid", path=str(self.path), error=str(exc))
            return False
        self.roster_tenants = {tenant.tenant_id for tenant in roster.tenants}
        changed = await self.store.load_roster(roster)
        ROSTER_RELOADS.labels("loaded").inc()
        if self.audit is not None:
            for tenant in roster.tenants:
                params = {"path": str(self.path), "agents": len(tenant.agents)}
                await self.audit.record(tenant.tenant_id, "roster_file", "reload_roster", params, {})
        log.info("roster_reloaded", path=str(self.path), changed=changed)
        return True

    async def count_agents(self) -> None:
        """Set `sb_presence_agents{tenant,status}` from Redis (statuses only: one pipelined HGET per agent); tenants
        outside the configured ones are added up as "unknown"."""
        redis, keys = self.store.redis, self.store.keys
        bounds = LabelBounds.of_tenants(self.roster_tenants | self.configured())
        counts: dict[str, Counter[str]] = {}
        for tenant in sorted(text(t) for t in await redis.smembers(keys.presence_tenants())):
            members = [text(m) for m in await redis.smembers(keys.tenant_agents(tenant))]
            pipe = redis.pipeline(transaction=False)
            for agent_id in members:
                pipe.hget(keys.agent(tenant, agent_id), "status")
            found = Counter(text(s) if s else "offline" for s in await pipe.execute())
            counts.setdefault(bounds.tenant(tenant), Counter()).update(found)
        for label, found in counts.items():
            for status in STATUSES:
                AGENTS.labels(label, status).set(found.get(status, 0))
