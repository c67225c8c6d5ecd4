"""Request and response bodies of the operator API."""

from __future__ import annotations

from datetime import datetime

from pydantic import AwareDatetime, BaseModel, Field, field_validator, model_validator

from switchboard.presence.surge import SurgeSchedule
from switchboard.routing.surge import MAX_FACTOR, SurgeProfile
from switchboard.runtime.idents import Ident
from switchboard.runtime.text import Name, Reason
from switchboard.state.agent_model import AgentState, Status
from switchboard.state.languages import LanguageList
from switchboard.state.roster import ChannelSlots, Groups, Proficiency, stray_level_message, stray_levels

# Agents one bulk call adds or removes.
MAX_BULK = 5000
# Schedules accept windows between these years: a date outside is a typo, and far dates overflow epoch milliseconds.
EARLIEST_YEAR = 2000
LATEST_YEAR = 2200


class AgentView(BaseModel):
    """An agent as operators see it: status, skills, capacity and the load the router wrote.

    `groups` are what it serves now; `own_groups` its own, which differ while a surge profile's pool widens them.
    `proficiency`: its level (1-5) per group it has one in; the router counts any other group it serves (a pooled
    one too) at the default level."""

    agent_id: str
    display_name: str
    status: Status
    status_since_ms: int
    groups: list[str]
    own_groups: list[str]
    languages: list[str]
    capacity: dict[str, int]
    effective_capacity: dict[str, int]
    used: dict[str, int]
    load: float
    multiplier: float
    temporary: bool
    last_heartbeat_ms: int
    proficiency: dict[str, int]

    @classmethod
    def of(cls, state: AgentState) -> AgentView:
        """The view of one agent state."""
        return cls(
            agent_id=state.agent_id,
            display_name=state.display_name,
            status=state.status,
            status_since_ms=state.status_since_ms,
            groups=state.groups,
            own_groups=state.own_groups,
            languages=state.languages,
            capacity=state.capacity,
            effective_capacity=state.effective_capacity(),
            used=state.used,
            load=round(state.load(), 3),
            multiplier=state.multiplier,
            temporary=state.temporary,
            last_heartbeat_ms=state.last_heartbeat_ms,
            proficiency=state.proficiency,
        )


class WhereView(BaseModel):
    """Who is where: a page of agents, how many match in all, counts by status, and by group and status."""

    total: int
    agents: list[AgentView]
    by_status: dict[str, int]
    by_group: dict[str, dict[str, int]]
    active_profile: str | None


class CapacityRequest(BaseModel):
    """Set the capacity multiplier of a tenant's agents, or of one group's, to `factor` (1 = normal)."""

    factor: float = Field(gt=0, le=MAX_FACTOR)
    group: Ident | None = None


class ChangedView(BaseModel):
    """Agents whose record changed."""

    changed: list[str]


class AgentChanges(BaseModel):
    """Live changes to an agent; omitted fields stay as they are.

    `proficiency` replaces the agent's levels as a whole (`{}` clears them); every group in it must be among the
    agent's own groups after the change (422 otherwise). New `groups` without `proficiency` drop the levels of
    groups the agent leaves. `languages` are ISO 639-1 codes."""

    groups: Groups | None = None
    languages: LanguageList | None = None
    capacity: ChannelSlots | None = None
    display_name: Name | None = None
    proficiency: Proficiency | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> AgentChanges:
        if not self.model_fields_set:
            raise ValueError("nothing to change")
        return self


class StatusRequest(BaseModel):
    """An operator sets an agent's status (offline agents come back only by logging in)."""

    status: Status
    reason: Reason = ""


class TemporaryAgent(BaseModel):
    """A surge helper: skills, languages, capacity; offline until it logs in through the gateway."""

    agent_id: Ident
    display_name: Name = ""
    groups: Groups = Field(min_length=1)
    languages: LanguageList = Field(default_factory=list)
    capacity: ChannelSlots = Field(default_factory=ChannelSlots)
    proficiency: Proficiency = Field(default_factory=dict)

    @model_validator(mode="after")
    def _levels_in_groups(self) -> TemporaryAgent:
        stray = stray_levels(self.proficiency, self.groups)
        if stray:
            raise ValueError(stray_level_message(stray[0], self.groups))
        return self


class TemporaryAgentsView(BaseModel):
    """The agents added, and the login password issued to each (shown only here, once)."""

    changed: list[str]
    passwords: dict[str, str]


class TemporaryAgentsRequest(BaseModel):
    """Agents to add in bulk."""

    agents: list[TemporaryAgent] = Field(min_length=1, max_length=MAX_BULK)


class RemoveRequest(BaseModel):
    """Temporary agents to remove in bulk."""

    agent_ids: list[Ident] = Field(min_length=1, max_length=MAX_BULK)


class ActivateRequest(BaseModel):
    """The profile to switch on."""

    profile: Ident


class ScheduleRequest(BaseModel):
    """A window, with time zone (e.g. `2026-11-11T00:00:00+08:00` to `2026-11-11T02:00:00+08:00`)."""

    profile: Ident
    start: AwareDatetime
    end: AwareDatetime

    @field_validator("start", "end")
    @classmethod
    def _plausible(cls, moment: datetime) -> datetime:
        # checked in UTC: an offset near year 1 or 9999 would leave the range datetime can hold
        if not EARLIEST_YEAR <= moment.year <= LATEST_YEAR:
            raise ValueError(f"must be between the years {EARLIEST_YEAR} and {LATEST_YEAR}")
        return moment


class SurgeView(BaseModel):
    """A tenant's surge profiles, the one in force, and its schedules."""

    profiles: dict[str, SurgeProfile]
    active_profile: str | None
    schedules: list[SurgeSchedule]
