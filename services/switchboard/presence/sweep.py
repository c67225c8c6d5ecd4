"""The sweep: every interval, agents silent past the grace period go offline, due wrap-ups end, unacked records
are republished and surge schedules apply or revert.

Lost agents are found by reading the heartbeat sorted set, never by Redis key-expiry notifications (those are
not delivered reliably). Several replicas may sweep at once: each transition is a conditional script (only an agent
still silent, only a wrap-up still due, only a schedule still in its expected state), so exactly one replica
changes each agent and only that one publishes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from switchboard.presence import scripts
from switchboard.presence.control import SurgeControl
from switchboard.presence.metrics import REPUBLISHED, SCHEDULE_ACTIONS, SWEEP_SECONDS, SWEPT_OFFLINE, WRAP_UPS_ENDED
from switchboard.runtime.logs import get_logger
from switchboard.state import agents_lua as lua
from switchboard.state.agent_model import Status, text
from switchboard.state.agents import PresenceStore

log = get_logger(__name__)

# Agents handled per tenant per sweep and per kind, so one sweep stays short; the rest wait for the next.
SWEEP_BATCH = 1000


class Sweeper:
    """Runs the sweep loop of one presence replica."""

    def __init__(
        self,
        store: PresenceStore,
        control: SurgeControl,
        *,
        grace_s: float,
        interval_s: float,
        republish_after_s: float = 10.0,
    ) -> None:
        self.store = store
        self.control = control
        self.grace_ms = int(grace_s * 1000)
        self.interval_s = interval_s
        self.republish_after_ms = int(republish_after_s * 1000)
        self._stop = asyncio.Event()
        self.healthy = True

    def stop(self) -> None:
        """Finish the current sweep and stop."""
        self._stop.set()

    async def run(self) -> None:
        """Sweep every `interval_s` until stopped; a failed sweep is logged and retried next interval."""
        while not self._stop.is_set():
            started = time.perf_counter()
            try:
                await self.sweep_once()
                self.healthy = True
            except Exception as exc:  # Redis down: report not-ready, keep trying, never die
                self.healthy = False
                log.warning("sweep_failed", error=repr(exc))
            SWEEP_SECONDS.observe(time.perf_counter() - started)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.interval_s)

    async def sweep_once(self) -> None:
        """One sweep over every tenant presence knows."""
        tenants = sorted(text(t) for t in await self.store.redis.smembers(self.store.keys.presence_tenants()))
        for tenant_id in tenants:
            now = self.store.now_ms()
            await self.sweep_heartbeats(tenant_id, now)
            await self.end_wrap_ups(tenant_id, now)
            await self.republish(tenant_id, now)
            for _, action in await self.control.run_schedules(tenant_id, now):
                SCHEDULE_ACTIONS.labels(action.value).inc()

    async def sweep_heartbeats(self, tenant_id: str, now_ms: int) -> int:
        """Set offline the agents whose last heartbeat is older than the grace period."""
        cutoff = now_ms - self.grace_ms
        total = 0
        # batch after batch: a gateway crash drops thousands of sockets at once, and all of them must be offline
        # by grace + interval, not a batch per sweep later
        while True:
            silent: list[bytes] = await self.store.redis.zrangebyscore(  # type: ignore[assignment]
                self.store.keys.heartbeats(tenant_id), "-inf", f"({cutoff}", start=0, num=SWEEP_BATCH
            )
            offline = await self._transition_all(
                self.store.keys.heartbeats(tenant_id),
                tenant_id,
                [text(m) for m in silent],
                Status.OFFLINE,
                "heartbeat_sweep",
                "heartbeats stopped",
                condition="stale_before",
                cutoff_ms=cutoff,
            )
            await self.store.publish(tenant_id, offline)  # one acked send per batch
            SWEPT_OFFLINE.inc(len(offline))
            total += len(offline)
            # a batch that changed nobody (another replica got them) or was not full ends the round
            if len(silent) < SWEEP_BATCH or not offline:
                return total

    async def end_wrap_ups(self, tenant_id: str, now_ms: int) -> int:
        """Return agents whose wrap-up timer ran out to available."""
        due: list[bytes] = await self.store.redis.zrangebyscore(  # type: ignore[assignment]
            self.store.keys.wrap_up_timers(tenant_id), "-inf", now_ms, start=0, num=SWEEP_BATCH
        )
        ended = await self._transition_all(
            self.store.keys.wrap_up_timers(tenant_id),
            tenant_id,
            [text(m) for m in due],
            Status.AVAILABLE,
            "wrap_up_timer",
            "wrap-up ended",
            condition="wrap_up_due",
        )
        await self.store.publish(tenant_id, ended)
        WRAP_UPS_ENDED.inc(len(ended))
        return len(ended)

    async def _transition_all(
        self,
        timer_set: str,
        tenant_id: str,
        agent_ids: list[str],
        new: Status,
        changed_by: str,
        reason: str,
        *,
        condition: str,
        cutoff_ms: int = 0,
    ) -> list[str]:
        if not agent_ids:
            return []
        codes = await self.store.transition_many(
            tenant_id, agent_ids, new, changed_by, reason, condition=condition, cutoff_ms=cutoff_ms
        )
        unknown = [a for a, code in codes.items() if code == lua.UNKNOWN_AGENT]
        if unknown:
            # a hash deleted by hand (or a removed agent) must not come back in every later sweep
            await self.store.redis.zrem(timer_set, *unknown)
        return [a for a, code in codes.items() if code == lua.CHANGED]

    async def republish(self, tenant_id: str, now_ms: int) -> int:
        """Republish agents whose change was not acked by Kafka for a while (a failed send or a crashed replica)."""
        claimed = await scripts.CLAIM_PENDING(
            self.store.redis,
            keys=[self.store.keys.presence_pending(tenant_id)],
            args=[now_ms, now_ms - self.republish_after_ms, SWEEP_BATCH],
        )
        ids = [text(m) for m in claimed]
        if ids and await self.store.publish(tenant_id, ids):
            REPUBLISHED.inc(len(ids))
            log.info("presence_republished", tenant_id=tenant_id, agents=len(ids))
        return len(ids)
