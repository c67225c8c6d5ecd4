"""Knowing when Redis lost a service's state of a tenant, and rebuilding it once.

Each service that keeps state in Redis sets a mark per tenant (`keys.state_mark(tenant, service)`) once that state
is there: after its first start for the tenant, and after every rebuild. A Redis restarted empty (or a failed-over
replica that had not got the writes) has no mark: the service rebuilds what it keeps from its sources of truth
(topics, files) before it writes anything new for the tenant, then sets the mark. A rebuild must be idempotent and
harmless on a first start (nothing to rebuild). One replica rebuilds a tenant at a time (a lock with a TTL); the
others wait for the mark. docs/state.md, "When Redis loses its data", says what each service rebuilds and from what.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis

from switchboard.runtime.errors import TransientError
from switchboard.runtime.logs import get_logger
from switchboard.state.keys import Keys

log = get_logger(__name__)

Rebuild = Callable[[str], Awaitable[None]]


class RebuildPending(TransientError):
    """Another replica is rebuilding the tenant's state: wait and retry (the consumer pauses on it)."""


class StateMarks:
    """The marks of one service: is its state of a tenant in Redis, and rebuild it when not."""

    def __init__(
        self, redis: Redis, keys: Keys, service: str, instance: str, *, lock_ms: int = 60_000, timeout_s: float = 15.0
    ) -> None:
        self._redis = redis
        self._timeout_s = timeout_s
        self._keys = keys
        self._service = service
        self._instance = instance
        self._lock_ms = lock_ms

    def key(self, tenant_id: str) -> str:
        """The mark's key (scripts that create state may check it atomically with EXISTS)."""
        return self._keys.state_mark(tenant_id, self._service)

    async def present(self, tenant_id: str) -> bool:
        """True while the service's state of the tenant is in Redis."""
        return bool(await self._redis.exists(self.key(tenant_id)))

    async def ensure(self, tenant_id: str, rebuild: Rebuild) -> bool:
        """Rebuild the tenant's state when its mark is missing; True when this call rebuilt it.

        Raises RebuildPending while another replica holds the rebuild lock."""
        if await self.present(tenant_id):
            return False
        lock = self._keys.state_rebuild_lock(tenant_id, self._service)
        if not await self._redis.set(lock, self._instance, nx=True, px=self._lock_ms):
            raise RebuildPending(f"{self._service} state of {tenant_id} is being rebuilt by another replica")
        started = time.monotonic()
        try:
            # A rebuild stuck on a source (a broker that does not answer one reader) gives the lock back and is
            # tried again from the start, instead of holding every replica's work for the tenant.
            async with asyncio.timeout(self._timeout_s):
                await rebuild(tenant_id)
            await self.set(tenant_id)
        except TimeoutError as exc:
            log.warning("state_rebuild_timed_out", service=self._service, tenant=tenant_id, seconds=self._timeout_s)
            raise RebuildPending(f"{self._service} state of {tenant_id}: rebuild took over {self._timeout_s}s") from exc
        finally:
            await self._redis.delete(lock)
        log.info("state rebuilt", service=self._service, tenant=tenant_id, seconds=round(time.monotonic() - started, 3))
        return True

    async def set(self, tenant_id: str) -> None:
        """Mark the tenant's state as present (after a rebuild, or when a first start had nothing to rebuild)."""
        value = json.dumps({"at_ms": int(time.time() * 1000), "by": self._instance})
        await self._redis.set(self.key(tenant_id), value)
