"""Surge schedules as plain data: when a window switches a profile (`routing.surge`) on and off.

Pure functions; `control.py` does the Redis and Kafka side.
"""

from __future__ import annotations

import uuid
from enum import StrEnum

from pydantic import BaseModel, Field, model_validator

from switchboard.runtime.idents import Ident


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
