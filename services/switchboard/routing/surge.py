"""Surge profiles (大促模式): what a tenant's routing does differently while a profile is in force.

A profile is plain data, defined and switched through presence's operator API (by hand or on a schedule) and kept
in Redis; the router, presence and the gateway read it. Besides capacity factors it may set:

- `overflow`: per group, overflow rings that replace the group's own rings while the profile is on (earlier
  thresholds: after_s, estimated wait, service level);
- `pools`: generalist pools — the agents of a group (the key) also serve the listed groups while the profile is on,
  and stop after;
- `bot_first`: the bot intents (the tenant config's `bot.intents`) answered without an agent while it is on;
- `customer_updates`: which channels tell waiting customers their queue position and estimated wait;
- `response_target_s`: per group, the response-time target (Taobao's 3分钟响应率) while it is on.

`effective_config` folds a profile into a tenant's routing config, so the routing policy itself never asks whether
a profile is on. `profile_errors` checks a profile against the tenant's config (unknown groups, out-of-range
thresholds), so the operator API answers a bad profile with a clear 4xx.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from switchboard.routing.config import OverflowRing, TenantRouting
from switchboard.runtime.idents import Ident
from switchboard.runtime.text import Description

# Beyond this a typo (15 instead of 1.5) would let every agent drown in work.
MAX_FACTOR = 10.0
# Thresholds beyond a day are typos, not policies.
MAX_THRESHOLD_S = 86_400.0
# Groups, pools, intents a profile names: a bound on its size (a shop has a few dozen groups).
MAX_ENTRIES = 256

Factor = Annotated[float, Field(gt=0, le=MAX_FACTOR)]
TargetS = Annotated[float, Field(gt=0, le=MAX_THRESHOLD_S)]
Rings = Annotated[list[OverflowRing], Field(max_length=MAX_ENTRIES)]
Groups = Annotated[list[Ident], Field(max_length=MAX_ENTRIES)]


class CustomerUpdates(BaseModel):
    """Which channels tell a waiting customer where they stand while the profile is on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # A widget `queue` frame with position and estimated wait, whenever either changes.
    chat: bool = False
    # One acknowledgement mail per conversation with the expected answer time.
    email: bool = False
    # An announcement text (position, estimated wait) in the answer to the call's events.
    phone: bool = False

    def channels(self) -> frozenset[str]:
        """The channel names switched on."""
        return frozenset(name for name in ("chat", "email", "phone") if getattr(self, name))


class SurgeProfile(BaseModel):
    """A named surge mode of one tenant (see the module doc)."""

    model_config = ConfigDict(extra="forbid")

    tenant_factor: Factor = 1.0
    group_factors: dict[Ident, Factor] = Field(default_factory=dict, max_length=MAX_ENTRIES)
    description: Description = ""
    overflow: dict[Ident, Rings] = Field(default_factory=dict, max_length=MAX_ENTRIES)
    pools: dict[Ident, Groups] = Field(default_factory=dict, max_length=MAX_ENTRIES)
    bot_first: list[Ident] = Field(default_factory=list, max_length=MAX_ENTRIES)
    customer_updates: CustomerUpdates = CustomerUpdates()
    response_target_s: dict[Ident, TargetS] = Field(default_factory=dict, max_length=MAX_ENTRIES)

    # Factors, targets and ring thresholds are bounded by their field types (OverflowRing's too), so a value out of
    # range is a 422 naming its field, and the schema shows the bound.


def factor_for(groups: Sequence[str], profile: SurgeProfile | None) -> float:
    """An agent's multiplier under a profile: the highest factor among its groups that have one, else the
    tenant factor; 1.0 without a profile. (The highest, because an agent in a surged group takes surge work.)"""
    if profile is None:
        return 1.0
    own = [profile.group_factors[g] for g in groups if g in profile.group_factors]
    return max(own) if own else profile.tenant_factor


def pooled_groups(groups: Sequence[str], profile: SurgeProfile | None) -> list[str]:
    """An agent's skill groups under a profile: its own, plus those its groups' pools serve, in a stable order."""
    result = list(groups)
    if profile is None:
        return result
    for group in groups:
        for joined in profile.pools.get(group, []):
            if joined not in result:
                result.append(joined)
    return result


def profile_errors(profile: SurgeProfile, config: TenantRouting) -> list[str]:
    """What in a profile does not fit the tenant's routing config (empty when it fits)."""
    known = {g.name for g in config.skill_groups}
    errors = [f"group_factors: unknown group {g!r}" for g in profile.group_factors if g not in known]
    errors += [f"response_target_s: unknown group {g!r}" for g in profile.response_target_s if g not in known]
    for group, rings in profile.overflow.items():
        if group not in known:
            errors.append(f"overflow: unknown group {group!r}")
        errors += [
            f"overflow.{group}: unknown or own group {ring.group!r}"
            for ring in rings
            if ring.group not in known or ring.group == group
        ]
    for pool, joined in profile.pools.items():
        if pool not in known:
            errors.append(f"pools: unknown group {pool!r}")
        errors += [f"pools.{pool}: unknown group {g!r}" for g in joined if g not in known]
    intents = {i.name for i in config.bot.intents}
    errors += [f"bot_first: unknown bot intent {name!r}" for name in profile.bot_first if name not in intents]
    return errors


def effective_config(config: TenantRouting, profile: SurgeProfile | None) -> TenantRouting:
    """The tenant's routing config with the profile's overflow rings in place of the groups' own (unchanged
    without a profile or without overrides)."""
    if profile is None or not profile.overflow:
        return config
    groups = [
        g.model_copy(update={"overflow": list(profile.overflow[g.name])}) if g.name in profile.overflow else g
        for g in config.skill_groups
    ]
    return config.model_copy(update={"skill_groups": groups})
