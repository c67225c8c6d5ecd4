"""The surge profile in force per tenant, as the router knows it, and the routing config it makes.

Presence switches profiles (by hand or on a schedule) and keeps the one in force in Redis (`state/surge.py`). The
router reads it on every sweep, and at once when an AgentPresence record names another profile than the one it
knows (presence stamps every record with the profile in force when it wrote it). `ConfigStore.get` answers with
`routing.surge.effective_config` of the tenant's config and this profile, so every decision (inbound, commands,
drains, timeouts, overflow) follows the profile without asking about it.

A profile that does not fit the routing config in force (presence checks it when it is defined and switched on, but
the config file may change since) is logged and not applied: routing goes on by the config alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from pydantic import ValidationError
from redis.asyncio import Redis

from switchboard.routing.config import TenantRouting
from switchboard.routing.surge import SurgeProfile, effective_config, profile_errors
from switchboard.runtime.logs import get_logger
from switchboard.state.keys import Keys
from switchboard.state.surge import read_active_surge

log = get_logger(__name__)


@dataclass(frozen=True)
class ActiveProfile:
    """A tenant's profile in force: its name and definition (None when it cannot be read as a profile)."""

    name: str
    profile: SurgeProfile | None


NO_PROFILE = ActiveProfile("", None)


def parse_profile(name: str, definition: dict[str, object]) -> ActiveProfile:
    """The profile of a stored definition; an unreadable one is logged and routes like no profile (by name)."""
    try:
        return ActiveProfile(name, SurgeProfile.model_validate(definition))
    except ValidationError as exc:
        log.error("surge_profile_unreadable", profile=name, error=str(exc))
        return ActiveProfile(name, None)


class ActiveProfiles:
    """The profile in force per tenant (one per router process) and the effective config it makes."""

    def __init__(self) -> None:
        self._active: dict[str, ActiveProfile] = {}
        self._seen: dict[str, str] = {}
        # tenant -> (config, profile, effective config): the same objects while neither changes, so the router's
        # snapshot cache (keyed by the config object) keeps working
        self._effective: dict[str, tuple[TenantRouting, ActiveProfile, TenantRouting]] = {}

    def name(self, tenant: str) -> str:
        """The name of the tenant's profile in force ('' without one)."""
        return self._active.get(tenant, NO_PROFILE).name

    def get(self, tenant: str) -> ActiveProfile:
        """The tenant's profile in force as last read."""
        return self._active.get(tenant, NO_PROFILE)

    def set(self, tenant: str, active: ActiveProfile, stored: str = "") -> bool:
        """Install what was read (`stored`: its definition as stored); True when the profile changed."""
        key = f"{active.name}\n{stored}"
        if self._seen.get(tenant) == key:
            return False
        self._seen[tenant] = key
        self._active[tenant] = active
        self._effective.pop(tenant, None)
        log.info("surge_profile_in_force", tenant=tenant, profile=active.name or None)
        return True

    async def refresh(self, redis: Redis, keys: Keys, tenant: str) -> bool:
        """Read the tenant's profile in force from Redis; True when it changed since the last read."""
        surge = await read_active_surge(redis, keys, tenant)
        if surge is None:
            return self.set(tenant, NO_PROFILE)
        stored = json.dumps(surge.definition, sort_keys=True)
        if self._seen.get(tenant) == f"{surge.name}\n{stored}":
            return False
        return self.set(tenant, parse_profile(surge.name, surge.definition), stored)

    def effective(self, config: TenantRouting) -> TenantRouting:
        """The tenant's config with its profile in force folded in (the config itself without a fitting one)."""
        active = self._active.get(config.tenant, NO_PROFILE)
        if active.profile is None:
            return config
        cached = self._effective.get(config.tenant)
        if cached is not None and cached[0] is config and cached[1] is active:
            return cached[2]
        errors = profile_errors(active.profile, config)
        if errors:
            log.error("surge_profile_unfit", tenant=config.tenant, profile=active.name, errors=errors)
            result = config
        else:
            result = effective_config(config, active.profile)
        self._effective[config.tenant] = (config, active, result)
        return result
