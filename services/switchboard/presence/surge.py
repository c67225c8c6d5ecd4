"""Surge profiles (大促模式) as plain data: which capacity factor an agent gets, and when a schedule acts.

Pure functions; `control.py` does the Redis and Kafka side.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from enum import StrEnum

from pydantic import BaseModel, Field, model_validator

from switchboard.state.roster import Ident

# Beyond this a typo (15 instead of 1.5) would let every agent drown in work.
MAX_FACTOR = 10.0


class SurgeProfile(BaseModel):
    """A named set of capacity factors: one for the whole tenant, and overrides per skill group."""

    tenant_factor: float = Field(default=1.0, gt=0, le=MAX_FACTOR)
    group_factors: dict[Ident, float] = Field(default_factory=dict)
    description: str = ""

    @model_validator(mode="after")
    def _factors_in_range(self) -> SurgeProfile:
        for group, factor in self.group_factors.items():
            if not 0 < factor <= MAX_FACTOR:
                raise ValueError(f"group factor of {group} must be in (0, {MAX_FACTOR}]")
        return self


def factor_for(groups: Sequence[str], profile: SurgeProfile | None) -> float:
    """An agent's multiplier under a profile: the highest factor among its groups that have one, else the
    tenant factor; 1.0 without a profile. (The highest, because an agent in a surged group takes surge work.)"""
    if profile is None:
        return 1.0
    own = [profile.group_factors[g] for g in groups if g in profile.group_factors]
    return max(own) if own else profile.tenant_factor


class ScheduleState(StrEnum):
    """Where a scheduled window is: waiting, in force, over (or cancelled)."""

    PENDING = "pending"
    ACTIVE = "active"
    DONE = "done"
    CANCELLED = "cancelled"


class SurgeSchedule(BaseModel):
    """A profile in force for a time window [start_ms, end_ms)."""

    schedule_id: str = Field(default_factory=lambda: uuid.uuid4().hex[:12])
    profile: Ident
    start_ms: int
    end_ms: int
    state: ScheduleState = ScheduleState.PENDING
    created_by: str = ""

    @model_validator(mode="after")
    def _window(self) -> SurgeSchedule:
        if self.end_ms <= self.start_ms:
            raise ValueError("a schedule must end after it starts")
        return self


class ScheduleAction(StrEnum):
    """What the sweep does with a schedule now."""

    APPLY = "apply"
    REVERT = "revert"
    EXPIRE = "expire"  # its whole window passed while no presence replica ran: never applied


def due_action(schedule: SurgeSchedule, now_ms: int) -> ScheduleAction | None:
    """The action a schedule needs at `now_ms`, or None."""
    if schedule.state is ScheduleState.PENDING:
        if now_ms >= schedule.end_ms:
            return ScheduleAction.EXPIRE
        if now_ms >= schedule.start_ms:
            return ScheduleAction.APPLY
    if schedule.state is ScheduleState.ACTIVE and now_ms >= schedule.end_ms:
        return ScheduleAction.REVERT
    return None


def next_state(action: ScheduleAction) -> tuple[ScheduleState, ScheduleState]:
    """(expected state, new state) of a schedule for an action."""
    if action is ScheduleAction.APPLY:
        return ScheduleState.PENDING, ScheduleState.ACTIVE
    if action is ScheduleAction.REVERT:
        return ScheduleState.ACTIVE, ScheduleState.DONE
    return ScheduleState.PENDING, ScheduleState.DONE
