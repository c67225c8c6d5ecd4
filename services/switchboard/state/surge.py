"""The surge profile in force for a tenant, as stored by presence: what any service may read of it.

Presence defines profiles (`routing.surge.SurgeProfile`, JSON in the `surge_profiles` hash) and switches one on
(`surge_state`: `active`, `since_ms`, `by`, `schedule_id`). Services that may not import the routing policy (the
adapters) read the definition here as plain JSON; the router and presence validate it with the policy's model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from switchboard.state.keys import Keys


@dataclass(frozen=True)
class ActiveSurge:
    """The profile in force: its name, since when, and its definition as stored."""

    name: str
    since_ms: int
    definition: dict[str, Any] = field(default_factory=dict)

    def customer_updates(self) -> frozenset[str]:
        """The channels whose waiting customers are told their position and estimated wait."""
        updates = self.definition.get("customer_updates") or {}
        return frozenset(ch for ch in ("chat", "email", "phone") if updates.get(ch))


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")


async def read_active_surge(redis: Redis, keys: Keys, tenant_id: str) -> ActiveSurge | None:
    """The tenant's profile in force, or None (also when its definition was deleted or is not JSON)."""
    state = await redis.hgetall(keys.surge_state(tenant_id))
    name = _text(state.get(b"active") or state.get("active"))
    if not name:
        return None
    raw = await redis.hget(keys.surge_profiles(tenant_id), name)
    try:
        definition = json.loads(raw) if raw else None
    except ValueError:
        definition = None
    if not isinstance(definition, dict):
        return None
    since = _text(state.get(b"since_ms") or state.get("since_ms"))
    return ActiveSurge(name, int(since) if since.isdigit() else 0, definition)
