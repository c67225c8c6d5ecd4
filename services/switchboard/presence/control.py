"""Operator controls: capacity factors, temporary agents, surge profiles and their schedules, each audited.

Capacity and skill changes go through PresenceStore (one script per agent, one AgentPresence record per changed
agent), so the router sees a raised `multiplier` or a pool's extra groups as soon as the record lands.

A profile's `pools` widen what agents serve while it is on: an agent of a pool group also serves the groups listed
for it. The agent hash keeps its own groups apart (`own_groups`), so switching the profile off (or on again, or
changing it) recomputes what each agent serves from its own groups, exactly; agents added, reloaded from the roster
or changed by an operator while a profile is on are widened as they are written (the store asks `widen_for`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from switchboard.presence import scripts
from switchboard.presence.audit import AuditLog
from switchboard.presence.routing_configs import RoutingConfigs
from switchboard.presence.settings import REPO_ROUTING_DIR
from switchboard.presence.surge import (
    ScheduleAction,
    ScheduleState,
    SurgeSchedule,
    due_action,
    next_state,
)
from switchboard.routing.surge import SurgeProfile, factor_for, pooled_groups, profile_errors
from switchboard.runtime.logs import get_logger
from switchboard.state.agent_model import AgentState, ProfileChange, Status, text
from switchboard.state.agents import PresenceStore, Widen
from switchboard.state.roster import RosterAgent, stray_level_message, stray_levels

log = get_logger(__name__)


class ControlError(Exception):
    """An operator control that cannot be applied as asked (unknown profile, not a temporary agent, …)."""


class ProfileInvalid(ControlError):
    """A surge profile that does not fit the tenant's routing config; `errors` says what (one line each)."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


class LevelsInvalid(ControlError):
    """Levels given for groups the agent would not serve after the change."""


def fit_levels(state: AgentState, changes: dict[str, Any]) -> dict[str, Any]:
    """The changes with the agent's levels made to fit its own groups after them.

    Given levels must all be in those groups (else LevelsInvalid); new groups without levels drop the levels of the
    groups the agent leaves, so a level never outlives the agent's place in a group."""
    groups = list(changes.get("groups", state.own_groups))
    if "proficiency" in changes:
        stray = stray_levels(changes["proficiency"], groups)
        if stray:
            raise LevelsInvalid(stray_level_message(stray[0], groups))
        return changes
    kept = {group: level for group, level in state.proficiency.items() if group in groups}
    return {**changes, "proficiency": kept} if kept != state.proficiency else changes


class SurgeControl:
    """The operator's levers for one deployment; every method records an audit entry."""

    def __init__(self, store: PresenceStore, audit: AuditLog, configs: RoutingConfigs | None = None) -> None:
        self.store = store
        self.audit = audit
        self.redis = store.redis
        self.keys = store.keys
        self.configs = configs or RoutingConfigs(REPO_ROUTING_DIR)
        # every agent the store writes (roster, temporary agents, operator changes) serves what the profile says
        store.widening = self.widen_for

    async def scale_capacity(self, tenant_id: str, factor: float, operator: str, group: str | None = None) -> list[str]:
        """Set the capacity multiplier of every agent of the tenant (or of one group) to `factor`."""
        if not 0 < factor <= 10:
            raise ControlError("factor must be in (0, 10]")
        if group:
            ids = await self.store.group_members(tenant_id, group)
        else:
            ids = [a.agent_id for a in await self.store.list_agents(tenant_id)]
        changed = await self.store.set_multiplier(tenant_id, ids, factor)
        await self.audit.record(
            tenant_id,
            operator,
            "scale_capacity",
            {"factor": factor, "group": group},
            {"agents": len(ids), "changed": changed},
        )
        return changed

    async def add_temporary_agents(
        self, tenant_id: str, agents: Sequence[RosterAgent], operator: str
    ) -> dict[str, str]:
        """Add (or update) temporary agents, offline until they log in; an active profile's factor applies.

        Returns each agent's newly issued login password (shown once: neither stored nor audited in the clear)."""
        ids = [a.agent_id for a in agents]
        # all or nothing: refuse the whole batch before adding any of it
        rostered = [
            s.agent_id for s in await self.store.get_agents(tenant_id, ids) if s is not None and not s.temporary
        ]
        if rostered:
            raise ControlError(f"rostered agents, not temporary ones: {', '.join(rostered)}")
        helpers = [a.model_copy(update={"temporary": True, "password": None, "password_sha256": None}) for a in agents]
        await self.store.add_agents(tenant_id, helpers)
        added = ids
        profile = await self.active_profile(tenant_id)
        if profile is not None:
            await self._apply(tenant_id, profile, only=set(added))
        passwords = await self.store.issue_temporary_logins(tenant_id, added)
        await self.audit.record(
            tenant_id, operator, "add_temporary_agents", {"agent_ids": added}, {"added": len(added)}
        )
        return passwords

    async def remove_temporary_agents(self, tenant_id: str, agent_ids: Sequence[str], operator: str) -> dict[str, str]:
        """Remove temporary agents (offline first, so the router requeues their work); rostered ones are refused."""
        outcome: dict[str, str] = {}
        for agent_id in agent_ids:
            agent = await self.store.get_agent(tenant_id, agent_id)
            if agent is None:
                outcome[agent_id] = "unknown"
            elif not agent.temporary:
                outcome[agent_id] = "refused: not temporary"
            else:
                await self.store.remove_agent(tenant_id, agent_id, operator)
                outcome[agent_id] = "removed"
        await self.audit.record(tenant_id, operator, "remove_temporary_agents", {"agent_ids": list(agent_ids)}, outcome)
        return outcome

    def check_profile(self, tenant_id: str, profile: SurgeProfile) -> None:
        """Raise ProfileInvalid unless the profile fits the tenant's routing config (groups, rings, pools)."""
        config = self.configs.get(tenant_id)
        if config is None:
            raise ProfileInvalid([f"no routing config for tenant {tenant_id!r} to check the profile against"])
        errors = profile_errors(profile, config)
        if errors:
            raise ProfileInvalid(errors)

    async def put_profile(self, tenant_id: str, name: str, profile: SurgeProfile, operator: str) -> None:
        """Define or replace a surge profile (does not switch it on; an active one is re-applied).

        Refused (ProfileInvalid, nothing stored) when it does not fit the tenant's routing config."""
        self.check_profile(tenant_id, profile)
        await self.redis.hset(self.keys.surge_profiles(tenant_id), name, profile.model_dump_json())
        active = await self.active_profile_name(tenant_id)
        result: dict[str, Any] = {"reapplied": False}
        if active == name:
            result["changed"] = await self._apply(tenant_id, profile)
            result["reapplied"] = True
        await self.audit.record(tenant_id, operator, "put_profile", {"name": name, **profile.model_dump()}, result)

    async def profiles(self, tenant_id: str) -> dict[str, SurgeProfile]:
        """Every defined profile of a tenant."""
        raw = await self.redis.hgetall(self.keys.surge_profiles(tenant_id))
        return {text(k): SurgeProfile.model_validate_json(v) for k, v in raw.items()}

    async def active_profile_name(self, tenant_id: str) -> str | None:
        """The name of the profile in force, or None."""
        active = await self.redis.hget(self.keys.surge_state(tenant_id), "active")
        return text(active) if active else None

    async def active_profile(self, tenant_id: str) -> SurgeProfile | None:
        """The profile in force, or None."""
        name = await self.active_profile_name(tenant_id)
        return (await self.profiles(tenant_id)).get(name) if name else None

    async def activate(self, tenant_id: str, name: str, operator: str, schedule_id: str = "") -> list[str]:
        """Switch a profile on: every agent gets the profile's factor for its groups."""
        profile = (await self.profiles(tenant_id)).get(name)
        if profile is None:
            raise ControlError(f"no surge profile {name!r}")
        self.check_profile(tenant_id, profile)  # the routing config may have changed since it was defined
        await self.redis.hset(
            self.keys.surge_state(tenant_id),
            mapping={"active": name, "since_ms": self.store.now_ms(), "by": operator, "schedule_id": schedule_id},
        )
        changed = await self._apply(tenant_id, profile)
        await self.audit.record(
            tenant_id, operator, "activate_profile", {"name": name, "schedule_id": schedule_id}, {"changed": changed}
        )
        return changed

    async def deactivate(self, tenant_id: str, operator: str, schedule_id: str = "") -> list[str]:
        """Switch the surge profile off: every agent's multiplier back to 1."""
        previous = await self.active_profile_name(tenant_id)
        await self.redis.delete(self.keys.surge_state(tenant_id))
        changed = await self._apply(tenant_id, None)
        await self.audit.record(
            tenant_id,
            operator,
            "deactivate_profile",
            {"previous": previous, "schedule_id": schedule_id},
            {"changed": changed},
        )
        return changed

    async def widen_for(self, tenant_id: str) -> tuple[str, Widen]:
        """What an agent serves, given its own groups, under the tenant's profile in force, and a token of that
        profile (which, since when, its definition): the store's hook."""
        state = await self.redis.hgetall(self.keys.surge_state(tenant_id))
        name = text(state.get(b"active") or b"")
        raw = await self.redis.hget(self.keys.surge_profiles(tenant_id), name) if name else None
        profile = SurgeProfile.model_validate_json(raw) if raw else None
        token = f"{name}/{text(state.get(b'since_ms') or b'')}/{text(raw or b'')}"
        return token, lambda groups: pooled_groups(groups, profile)

    async def _apply(self, tenant_id: str, profile: SurgeProfile | None, only: set[str] | None = None) -> list[str]:
        """Every agent (or those in `only`) gets the profile's factor for its own groups and serves what the
        profile's pools add to them (its own groups exactly, without a profile)."""
        changes = [
            (agent.agent_id, ProfileChange(multiplier=factor_for(agent.own_groups, profile), regroup=True))
            for agent in await self.store.list_agents(tenant_id)
            if only is None or agent.agent_id in only
        ]
        return await self.store.apply_profiles(tenant_id, changes, widen=lambda groups: pooled_groups(groups, profile))

    # --- schedules ------------------------------------------------------------------------------------------

    async def schedule(self, tenant_id: str, schedule: SurgeSchedule, operator: str) -> SurgeSchedule:
        """Store a window in which a profile is in force; the sweep applies and reverts it."""
        if schedule.profile not in await self.profiles(tenant_id):
            raise ControlError(f"no surge profile {schedule.profile!r}")
        schedule = schedule.model_copy(update={"created_by": operator, "state": ScheduleState.PENDING})
        await self.redis.hset(self.keys.surge_schedules(tenant_id), schedule.schedule_id, schedule.model_dump_json())
        await self.audit.record(tenant_id, operator, "schedule_profile", schedule.model_dump(mode="json"), {})
        return schedule

    async def schedules(self, tenant_id: str) -> list[SurgeSchedule]:
        """Every schedule of a tenant, by start time."""
        raw = await self.redis.hgetall(self.keys.surge_schedules(tenant_id))
        return sorted((SurgeSchedule.model_validate_json(v) for v in raw.values()), key=lambda s: s.start_ms)

    async def cancel_schedule(self, tenant_id: str, schedule_id: str, operator: str) -> SurgeSchedule:
        """Cancel a schedule; if it is in force, its profile is switched off now."""
        for schedule in await self.schedules(tenant_id):
            if schedule.schedule_id != schedule_id:
                continue
            for state in (ScheduleState.PENDING, ScheduleState.ACTIVE):
                if await self._move(tenant_id, schedule, state, ScheduleState.CANCELLED):
                    if state is ScheduleState.ACTIVE:
                        await self.deactivate(tenant_id, operator, schedule_id)
                    await self.audit.record(tenant_id, operator, "cancel_schedule", {"schedule_id": schedule_id}, {})
                    return schedule.model_copy(update={"state": ScheduleState.CANCELLED})
            raise ControlError(f"schedule {schedule_id} is already {schedule.state.value}")
        raise ControlError(f"no schedule {schedule_id!r}")

    async def run_schedules(self, tenant_id: str, now_ms: int) -> list[tuple[str, ScheduleAction]]:
        """Apply, revert or expire the tenant's schedules that are due (called by every sweep of every replica;
        each transition is claimed atomically, so exactly one replica acts)."""
        done = []
        for schedule in await self.schedules(tenant_id):
            action = due_action(schedule, now_ms)
            if action is None:
                continue
            expected, new = next_state(action)
            if not await self._move(tenant_id, schedule, expected, new):
                continue  # another replica got there first
            actor = f"schedule:{schedule.schedule_id}"
            if action is ScheduleAction.APPLY:
                await self._apply_scheduled(tenant_id, schedule, actor)
            elif action is ScheduleAction.REVERT and await self._is_in_force(tenant_id, schedule.schedule_id):
                await self.deactivate(tenant_id, actor, schedule.schedule_id)
            log.info("surge_schedule", tenant_id=tenant_id, schedule_id=schedule.schedule_id, action=action.value)
            done.append((schedule.schedule_id, action))
        return done

    async def _apply_scheduled(self, tenant_id: str, schedule: SurgeSchedule, actor: str) -> None:
        try:
            await self.activate(tenant_id, schedule.profile, actor, schedule.schedule_id)
        except ControlError as exc:
            # deleted, or no longer fitting the routing config: the window passes without it, on the record
            log.error("surge_schedule_refused", tenant_id=tenant_id, schedule_id=schedule.schedule_id, error=str(exc))
            await self.audit.record(
                tenant_id,
                actor,
                "activate_profile_refused",
                {"name": schedule.profile, "schedule_id": schedule.schedule_id},
                {"error": str(exc)},
            )

    async def _is_in_force(self, tenant_id: str, schedule_id: str) -> bool:
        # An operator may have switched another profile on by hand meanwhile; the window's end must not undo it.
        current = await self.redis.hget(self.keys.surge_state(tenant_id), "schedule_id")
        return current is not None and text(current) == schedule_id

    async def _move(self, tenant_id: str, schedule: SurgeSchedule, expected: ScheduleState, new: ScheduleState) -> bool:
        moved = schedule.model_copy(update={"state": new})
        result = await scripts.CLAIM_SCHEDULE(
            self.redis,
            keys=[self.keys.surge_schedules(tenant_id)],
            args=[schedule.schedule_id, expected.value, moved.model_dump_json()],
        )
        return bool(result == 1)

    # --- live profile and status changes by operators ---------------------------------------------------------

    async def update_agent(self, tenant_id: str, agent_id: str, changes: dict[str, Any], operator: str) -> bool:
        """Change an agent's groups, languages, capacity, levels or display name live.

        Raises ControlError for an unknown agent, LevelsInvalid for a level in a group the agent would not serve."""
        state = await self.store.get_agent(tenant_id, agent_id)
        if state is None:
            raise ControlError(f"no agent {agent_id!r}")
        changes = fit_levels(state, changes)
        changed = await self.store.update_profile(tenant_id, agent_id, **changes)
        profile = await self.active_profile(tenant_id)
        if "groups" in changes and profile is not None:
            # new own groups may carry another factor under the profile in force
            changed = bool(await self._apply(tenant_id, profile, only={agent_id})) or changed
        await self.audit.record(
            tenant_id, operator, "update_agent", {"agent_id": agent_id, **changes}, {"changed": changed}
        )
        return changed

    async def set_status(self, tenant_id: str, agent_id: str, status: Status, reason: str, operator: str) -> Status:
        """An operator sets an agent's status (an offline agent stays offline until it logs in)."""
        state = await self.store.set_status(tenant_id, agent_id, status, operator, reason=reason)
        await self.audit.record(
            tenant_id,
            operator,
            "set_status",
            {"agent_id": agent_id, "status": status.value, "reason": reason},
            {"status": state.status.value},
        )
        return state.status
