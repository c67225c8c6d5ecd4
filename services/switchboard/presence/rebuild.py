"""Rebuilding presence's state of a tenant after Redis lost it (docs/state.md, "When Redis loses its data").

Presence keeps a state mark per tenant (`state/marks.py`, service `presence`). When it is missing (Redis restarted
empty, or the first start), presence rebuilds from its two sources of truth before it writes anything else for the
tenant:

1. the compacted presence topic: the latest AgentPresence of each agent (highest `presence_version`) gives its
   status, session epoch, served groups, languages, levels, capacity, surge multiplier, display name and whether it
   is temporary. The hash gets that `presence_version`, so every later record is newer than what the router holds.
   Agents not offline get a fresh heartbeat (a grace period from now): a desk still connected heartbeats on with the
   same session epoch, one that is gone times out as usual. A removed agent (offline, serving nothing, and not in
   the roster) stays removed.
2. the roster: every rostered agent the topic does not know is written as on a first start, and rostered agents the
   roster no longer lists are pruned (`PresenceStore.load_roster`).

Surge profiles, schedules and the profile in force, temporary agents' passwords and the audit stream live only in
Redis: they are not rebuilt (the agents keep the groups and multipliers the last records say; an operator puts the
profiles back, docs/state.md says how).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from aiokafka import ConsumerRecord

from switchboard.contracts import TYPE_HEADER, AgentPresence, ContractError, decode
from switchboard.presence import scripts
from switchboard.presence.metrics import STATE_REBUILDS
from switchboard.routing.skills import format_proficiency
from switchboard.runtime.logs import get_logger
from switchboard.runtime.lua import ScriptCall, run_pipelined
from switchboard.runtime.settings import ServiceSettings
from switchboard.runtime.topic_reader import read_topic_to_end
from switchboard.state.agent_model import CHANNEL_TO_PROTO, PROTO_TO_STATUS, Status, text
from switchboard.state.agents import PresenceStore
from switchboard.state.marks import RebuildPending, StateMarks
from switchboard.state.roster import CHANNELS, Roster, RosterAgent, load_roster

log = get_logger(__name__)

SERVICE = "presence"

# AgentPresence records by tenant, then agent: the latest of each agent.
Latest = dict[str, dict[str, AgentPresence]]


def latest_records(records: Iterable[ConsumerRecord[bytes, bytes]]) -> Latest:
    """The newest AgentPresence of each agent (highest presence_version; of equal ones, the later offset)."""
    latest: Latest = {}
    for record in records:
        headers = {k: v.decode("utf-8", "replace") for k, v in (record.headers or ())}
        try:
            message = decode(headers.get(TYPE_HEADER), record.value)
        except ContractError:
            continue
        if not isinstance(message, AgentPresence) or not message.tenant_id or not message.agent_id:
            continue
        agents = latest.setdefault(message.tenant_id, {})
        known = agents.get(message.agent_id)
        if known is None or message.presence_version >= known.presence_version:
            agents[message.agent_id] = message
    return latest


@dataclass(frozen=True)
class Restore:
    """One agent hash to restore from a record: the script's keys and arguments."""

    agent_id: str
    served: list[str]
    args: list[str | int]


def restore_of(record: AgentPresence, entry: RosterAgent | None, now_ms: int) -> Restore:
    """What the restore script writes for one record; `entry` is the agent's roster entry, if the roster lists it."""
    status = PROTO_TO_STATUS.get(record.status, Status.OFFLINE)
    served = list(record.skill_groups)
    # The record carries the groups served now; its own groups are the roster's while a surge profile widened them.
    own = list(entry.groups) if entry is not None and record.surge_profile and not record.temporary else served
    removed = status is Status.OFFLINE and not served and entry is None
    capacity = {c.channel: c.slots for c in record.capacity}
    online = status is not Status.OFFLINE
    wrap_up_until = record.wrap_up_until.ToMilliseconds() if record.HasField("wrap_up_until") else 0
    changed = record.changed_at.ToMilliseconds() if record.HasField("changed_at") else now_ms
    heartbeat = now_ms if online else (record.last_heartbeat_at.ToMilliseconds() if record.last_heartbeat_at else 0)
    fields: list[str | int] = [
        "status", status.value,
        "session_epoch", record.session_epoch,
        "groups", ",".join(served),
        "own_groups", ",".join(own),
        "languages", ",".join(record.languages),
        "proficiency", format_proficiency(dict(record.proficiency)),
        *(x for ch in CHANNELS for x in (f"cap:{ch}", capacity.get(CHANNEL_TO_PROTO[ch], 0))),
        "multiplier", repr(float(record.capacity_multiplier or 1.0)),
        "display_name", record.display_name,
        "temporary", "1" if record.temporary else "0",
        "presence_version", record.presence_version,
        "status_since_ms", changed,
        "changed_ms", changed,
        "status_changed_by", record.changed_by,
        "status_reason", record.reason,
        "gateway_instance", record.gateway_instance,
        "last_heartbeat_ms", heartbeat,
    ]  # fmt: skip
    if wrap_up_until:
        fields += ["wrap_up_until_ms", wrap_up_until]
    if entry is not None and not record.temporary:
        # the roster entry counts as written: a roster load keeps what operators changed live since
        fields += ["roster_entry", entry.entry_digest()]
    args: list[str | int] = [
        record.agent_id,
        record.presence_version,
        now_ms,
        status.value,
        wrap_up_until,
        "1" if removed else "0",
        *fields,
    ]
    return Restore(record.agent_id, [] if removed else served, args)


class PresenceRebuild:
    """Checks presence's marks of every tenant it knows and rebuilds those that are missing."""

    def __init__(
        self,
        settings: ServiceSettings,
        store: PresenceStore,
        instance: str,
        roster_path: Path | None,
        known: Callable[[], set[str]] = set,
    ) -> None:
        self.settings = settings
        self.store = store
        self.marks = StateMarks(store.redis, store.keys, SERVICE, instance)
        self.roster_path = roster_path
        # tenants presence knows without Redis: the roster's and the routing configs'
        self.known = known

    async def tenants(self) -> set[str]:
        """The tenants presence keeps state for: those it knows from files and those Redis still names."""
        stored = {text(t) for t in await self.store.redis.smembers(self.store.keys.presence_tenants())}
        return self.known() | stored

    def roster(self) -> Roster | None:
        """The roster file as it is now (None without one, or when it cannot be read: the topic alone is used)."""
        if self.roster_path is None:
            return None
        try:
            return load_roster(self.roster_path)
        except (OSError, ValueError) as exc:
            log.error("roster_unreadable_for_rebuild", path=str(self.roster_path), error=str(exc))
            return None

    async def check(self) -> list[str]:
        """Rebuild every tenant whose mark is missing (the topic is read once for all of them); returns those
        rebuilt here. A tenant another replica is rebuilding is skipped (its mark comes back)."""
        missing = [t for t in sorted(await self.tenants()) if not await self.marks.present(t)]
        if not missing:
            return []
        records = await read_topic_to_end(
            self.settings, self.store.producer.topics.presence, client_id=f"{SERVICE}-rebuild"
        )
        latest = latest_records(records)
        rebuilt = []
        for tenant_id in missing:
            with contextlib.suppress(RebuildPending):
                if await self.marks.ensure(tenant_id, lambda t: self.rebuild(t, latest.get(t, {}))):
                    rebuilt.append(tenant_id)
        return rebuilt

    async def rebuild(self, tenant_id: str, records: dict[str, AgentPresence]) -> None:
        """Restore the tenant's agents from their latest records, then load its roster entries over them."""
        roster = self.roster()
        tenant = next((t for t in roster.tenants if t.tenant_id == tenant_id), None) if roster else None
        entries = {a.agent_id: a for a in tenant.agents} if tenant is not None else {}
        now = self.store.now_ms()
        k = self.store.keys
        restores = [restore_of(r, entries.get(a), now) for a, r in sorted(records.items())]
        await self.store.redis.sadd(k.presence_tenants(), tenant_id)
        calls = [
            ScriptCall(
                scripts.RESTORE_AGENT,
                keys=[
                    k.agent(tenant_id, r.agent_id),
                    k.tenant_agents(tenant_id),
                    k.heartbeats(tenant_id),
                    k.wrap_up_timers(tenant_id),
                    *(k.group_agents(tenant_id, g) for g in r.served),
                ],
                args=r.args,
            )
            for r in restores
        ]
        restored = 0
        for start in range(0, len(calls), 1000):
            restored += sum(int(x) for x in await run_pipelined(self.store.redis, calls[start : start + 1000]))
        loaded = await self.store.load_roster(Roster(tenants=[tenant])) if tenant is not None else 0
        STATE_REBUILDS.inc()
        log.warning(
            "presence_state_rebuilt",
            tenant_id=tenant_id,
            records=len(records),
            restored=restored,
            roster_changes=loaded,
        )

    async def run(self, interval_s: float, stop: asyncio.Event) -> None:
        """Check the marks every `interval_s` until `stop`; failures (Redis or Kafka away) are retried."""
        while not stop.is_set():
            try:
                await self.check()
            except Exception as exc:  # Redis or Kafka away: the next round tries again
                log.warning("presence_rebuild_failed", error=repr(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)
