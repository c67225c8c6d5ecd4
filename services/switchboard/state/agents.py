"""PresenceStore: the one way an agent's presence changes (login, heartbeat, status, profile, removal).

Every change is one atomic Redis script (`state/agents_lua.py`); after it, the agent's current state is published as an
AgentPresence record on the compacted presence topic (key `tenant/agent`), and a status change also appends a
DESK_EVENT_STATUS to the agent's desk outbox inside the same script. The gateway calls this class directly.

If Kafka does not ack a record, the change stays in Redis and in the tenant's pending set; the sweep republishes
it. Records carry `presence_version`, so a consumer can drop one that arrives after a newer one.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence

from prometheus_client import Counter
from redis.asyncio import Redis

from switchboard.contracts import AgentPresence
from switchboard.runtime.errors import BrokerUnavailable
from switchboard.runtime.kafka import RecordProducer
from switchboard.runtime.logs import get_logger
from switchboard.runtime.lua import ScriptCall, run_pipelined
from switchboard.state import agents_lua as lua
from switchboard.state.agent_errors import AgentOffline, HeartbeatResult, PresenceError, StaleSession, UnknownAgent
from switchboard.state.agent_model import (
    AgentHashInvalid,
    AgentState,
    ProfileChange,
    Status,
    parse_agent_hash,
    presence_key,
    presence_knows,
    presence_wrote,
    split_csv,
    status_desk_event,
    text,
    to_presence_record,
)
from switchboard.state.keys import Keys
from switchboard.state.roster import Roster, RosterAgent, check_secret, hash_secret

# The gateway imports the errors from here, next to the store that raises them.
__all__ = [
    "AgentOffline",
    "HeartbeatResult",
    "PresenceError",
    "PresenceStore",
    "StaleSession",
    "UnknownAgent",
    "Widen",
    "WidenLookup",
]

# What an agent with these own groups serves (its own groups, widened by a surge profile's pools while one is on).
Widen = Callable[[Sequence[str]], list[str]]
# The Widen in force for a tenant now, and a token of the profile it follows (presence sets one: it knows the surge
# profiles). A write whose token changed by the time it is done is regrouped under the profile then in force.
WidenLookup = Callable[[str], Awaitable[tuple[str, Widen]]]


def _own(groups: Sequence[str]) -> list[str]:
    return list(groups)


log = get_logger(__name__)

RECORDS_SKIPPED = Counter(
    "sb_presence_records_skipped_total",
    "AgentPresence records not written because the agent hash holds a value out of bounds",
)

_KEEP_GROUPS = "\x00"
_NOT_CHECKED = "\x00"
# A profile or removal script whose agent's groups changed between the read and the script is run again.
_GROUP_RETRIES = 5


class PresenceStore:
    """Agent presence in Redis plus its AgentPresence records; safe to use from several processes at once."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        producer: RecordProducer,
        *,
        wrap_up_s: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.producer = producer
        self.wrap_up_s = wrap_up_s
        self._clock = clock
        # Set by presence: how the surge profile in force widens an agent's groups (None: agents serve their own).
        self.widening: WidenLookup | None = None

    def now_ms(self) -> int:
        """The store's clock in epoch milliseconds."""
        return int(self._clock() * 1000)

    # --- sessions -------------------------------------------------------------------------------------------

    async def login(
        self,
        tenant_id: str,
        agent_id: str,
        *,
        gateway_instance: str = "",
        initial_status: Status = Status.AVAILABLE,
        changed_by: str = "agent",
        after_epoch: int = 0,
    ) -> int:
        """Start a new session and return its epoch; every older session of the agent is fenced from now on.

        An offline agent becomes `initial_status`; an agent still online (a reconnect racing the grace period)
        keeps its status. The new epoch is above `after_epoch` too (a desk logged in again after Redis lost its
        session keeps a rising epoch).
        """
        now = self.now_ms()
        k = self.keys
        event = status_desk_event(tenant_id, agent_id, initial_status, now, changed_by, "login")
        code, epoch, _, _ = await lua.LOGIN(
            self.redis,
            keys=[
                k.agent(tenant_id, agent_id),
                k.heartbeats(tenant_id),
                k.presence_pending(tenant_id),
                k.desk_outbox(tenant_id, agent_id),
                k.desk_seq(tenant_id, agent_id),
                k.desk_notify(tenant_id),
            ],
            args=[
                agent_id,
                now,
                initial_status.value,
                gateway_instance,
                event.SerializeToString(),
                changed_by,
                after_epoch,
            ],
        )
        if code == lua.UNKNOWN_AGENT:
            raise UnknownAgent(f"{tenant_id}/{agent_id}")
        await self.redis.sadd(k.presence_tenants(), tenant_id)
        log.info("agent_login", tenant_id=tenant_id, agent_id=agent_id, session_epoch=epoch)
        await self.publish(tenant_id, [agent_id])
        return int(epoch)

    async def heartbeat(self, tenant_id: str, agent_id: str, session_epoch: int) -> HeartbeatResult:
        """Record a heartbeat of the agent's current session; a fenced or offline session is refused."""
        k = self.keys
        result = await lua.HEARTBEAT(
            self.redis,
            keys=[k.agent(tenant_id, agent_id), k.heartbeats(tenant_id)],
            args=[agent_id, session_epoch, self.now_ms()],
        )
        if result == lua.STALE_SESSION:
            return HeartbeatResult.STALE_SESSION
        if result == lua.NEEDS_LOGIN:
            return HeartbeatResult.OFFLINE
        return HeartbeatResult.OK

    async def logout(
        self, tenant_id: str, agent_id: str, session_epoch: int, changed_by: str = "agent", reason: str = "logout"
    ) -> bool:
        """Set the agent offline if `session_epoch` is still its session; False when fenced or already offline."""
        try:
            state = await self.set_status(tenant_id, agent_id, Status.OFFLINE, changed_by, session_epoch, reason)
        except (StaleSession, AgentOffline):
            return False
        return state.status is Status.OFFLINE

    # --- status ---------------------------------------------------------------------------------------------

    async def set_status(
        self,
        tenant_id: str,
        agent_id: str,
        status: Status | str,
        changed_by: str,
        session_epoch: int | None = None,
        reason: str = "",
        wrap_up_s: float | None = None,
    ) -> AgentState:
        """Change an agent's status and return its state after the change.

        `session_epoch` (from the agent's desktop) must be the current session, else StaleSession; callers
        without a session (router, operator) pass None. An offline agent comes back only by `login`
        (AgentOffline). `wrap_up` ends after `wrap_up_s` (default from settings) by the sweep.
        """
        new = Status(status)
        code = await self.transition(
            tenant_id, agent_id, new, changed_by, reason, session_epoch=session_epoch, wrap_up_s=wrap_up_s
        )
        if code == lua.STALE_SESSION:
            current = await self.get_agent(tenant_id, agent_id)
            raise StaleSession(current.session_epoch if current else 0)
        if code == lua.NEEDS_LOGIN:
            raise AgentOffline(f"{tenant_id}/{agent_id} is offline")
        state = await self.get_agent(tenant_id, agent_id)
        if state is None:
            raise UnknownAgent(f"{tenant_id}/{agent_id}")
        return state

    async def transition(
        self,
        tenant_id: str,
        agent_id: str,
        new: Status,
        changed_by: str,
        reason: str,
        *,
        session_epoch: int | None = None,
        condition: str = "",
        cutoff_ms: int = 0,
        wrap_up_s: float | None = None,
        publish: bool = True,
    ) -> int:
        """Run the transition script (and publish on a change); returns its result code (lua.CHANGED, …).

        `condition` is for the sweep: `stale_before` (only if no heartbeat since `cutoff_ms`) or `wrap_up_due`.
        Whichever replica's script changes the agent is the only one that publishes. With `publish=False` the
        caller publishes (the sweep sends one batch for many agents).
        """
        if wrap_up_s is not None and not 0 <= wrap_up_s <= 24 * 3600:
            raise ValueError("wrap_up_s must be between 0 and a day")
        now = self.now_ms()
        until = now + int((self.wrap_up_s if wrap_up_s is None else wrap_up_s) * 1000) if new is Status.WRAP_UP else 0
        keys, args = self._transition_call(
            tenant_id, agent_id, new, changed_by, reason, now, session_epoch, condition, cutoff_ms, until
        )
        code, *_ = await lua.TRANSITION(self.redis, keys, args)
        if code == lua.UNKNOWN_AGENT:
            raise UnknownAgent(f"{tenant_id}/{agent_id}")
        if code == lua.CHANGED:
            log.info(
                "agent_status",
                tenant_id=tenant_id,
                agent_id=agent_id,
                status=new.value,
                changed_by=changed_by,
                reason=reason,
            )
            if publish:
                await self.publish(tenant_id, [agent_id])
        return int(code)

    async def transition_many(
        self,
        tenant_id: str,
        agent_ids: Sequence[str],
        new: Status,
        changed_by: str,
        reason: str,
        *,
        condition: str,
        cutoff_ms: int = 0,
    ) -> dict[str, int]:
        """The sweep's transitions of many agents in one pipeline (no publishing: the caller sends one batch).

        Returns each agent's result code; a condition makes each script a no-op for agents already handled.
        """
        now = self.now_ms()
        calls = [
            ScriptCall(
                lua.TRANSITION,
                *self._transition_call(
                    tenant_id, agent_id, new, changed_by, reason, now, None, condition, cutoff_ms, 0
                ),
            )
            for agent_id in agent_ids
        ]
        results = await run_pipelined(self.redis, calls)
        codes = {agent_id: int(result[0]) for agent_id, result in zip(agent_ids, results, strict=True)}
        for agent_id, code in codes.items():
            if code == lua.CHANGED:
                log.info(
                    "agent_status", tenant_id=tenant_id, agent_id=agent_id, status=new.value, changed_by=changed_by
                )
        return codes

    def _transition_call(
        self,
        tenant_id: str,
        agent_id: str,
        new: Status,
        changed_by: str,
        reason: str,
        now: int,
        session_epoch: int | None,
        condition: str,
        cutoff_ms: int,
        until: int,
    ) -> tuple[list[str], list[str | int | bytes]]:
        k = self.keys
        event = status_desk_event(tenant_id, agent_id, new, now, changed_by, reason, until)
        keys = [
            k.agent(tenant_id, agent_id),
            k.heartbeats(tenant_id),
            k.wrap_up_timers(tenant_id),
            k.presence_pending(tenant_id),
            k.desk_outbox(tenant_id, agent_id),
            k.desk_seq(tenant_id, agent_id),
            k.desk_notify(tenant_id),
        ]
        args: list[str | int | bytes] = [
            agent_id,
            new.value,
            now,
            "" if session_epoch is None else session_epoch,
            condition,
            cutoff_ms,
            until,
            changed_by,
            reason,
            event.SerializeToString(),
        ]
        return keys, args

    # --- profile: skills, languages, capacity, surge multiplier ---------------------------------------------

    async def update_profile(
        self,
        tenant_id: str,
        agent_id: str,
        *,
        groups: Sequence[str] | None = None,
        languages: Sequence[str] | None = None,
        capacity: Mapping[str, int] | None = None,
        display_name: str | None = None,
        multiplier: float | None = None,
        temporary: bool | None = None,
        proficiency: Mapping[str, int] | None = None,
        publish: bool = True,
    ) -> bool:
        """Change what an agent can do (creating it offline if new); None leaves a field as it is.

        `proficiency` replaces the agent's levels (group -> 1..5) as a whole. Returns True when something changed
        (and, with `publish`, its record was sent).
        """
        change = ProfileChange(
            groups, languages, capacity, display_name, multiplier, temporary, proficiency=proficiency
        )
        return bool(await self.apply_profiles(tenant_id, [(agent_id, change)], publish=publish))

    async def apply_profiles(
        self,
        tenant_id: str,
        changes: Sequence[tuple[str, ProfileChange]],
        *,
        publish: bool = True,
        widen: Widen | None = None,
    ) -> list[str]:
        """Apply profile changes to many agents (pipelined in chunks: a Double 11 factor for 20,000 agents must not
        take 20,000 round trips); returns the agents that changed, whose records are then sent in one batch.

        New own groups (and a `regroup`) are widened by `widen`, by default the one in force for the tenant."""
        follow = widen is None and self.widening is not None
        token = ""
        if widen is None:
            token, widen = await self.widening(tenant_id) if self.widening is not None else ("", _own)
        changed = await self._apply_profile_chunks(tenant_id, changes, widen)
        for _ in range(_GROUP_RETRIES if follow else 0):
            assert self.widening is not None
            now_token, now_widen = await self.widening(tenant_id)
            if now_token == token:
                break
            # A profile switched while these agents were written (its own pass may have missed what this one
            # wrote after it): what they serve follows the profile in force now.
            token = now_token
            regroup = [(a, ProfileChange(regroup=True)) for a, change in changes if change.groups is not None]
            changed += await self._apply_profile_chunks(tenant_id, regroup, now_widen)
        if publish:
            await self.publish(tenant_id, list(dict.fromkeys(changed)))
        return list(dict.fromkeys(changed))

    async def _apply_profile_chunks(
        self, tenant_id: str, changes: Sequence[tuple[str, ProfileChange]], widen: Widen
    ) -> list[str]:
        changed: list[str] = []
        for start in range(0, len(changes), 1000):
            changed += await self._apply_profile_chunk(tenant_id, changes[start : start + 1000], widen)
        return changed

    async def _apply_profile_chunk(
        self, tenant_id: str, chunk: Sequence[tuple[str, ProfileChange]], widen: Widen
    ) -> list[str]:
        """One pipelined round of profile scripts; agents whose groups changed meanwhile are read and run again."""
        changed: list[str] = []
        todo = list(chunk)
        for _ in range(_GROUP_RETRIES):
            regrouping = [agent_id for agent_id, change in todo if change.groups is not None or change.regroup]
            read = dict(zip(regrouping, await self._read_group_fields(tenant_id, regrouping), strict=True))
            now = self.now_ms()
            calls = [
                self._profile_call(tenant_id, agent_id, change, read.get(agent_id), widen, now)
                for agent_id, change in todo
            ]
            results = await run_pipelined(self.redis, calls)
            changed += [a for (a, _), (code, _) in zip(todo, results, strict=True) if code == lua.CHANGED]
            todo = [item for item, (code, _) in zip(todo, results, strict=True) if code == lua.RETRY]
            if not todo:
                return changed
        raise PresenceError(f"groups of {len(todo)} agents of {tenant_id} kept changing during a profile update")

    def _profile_call(
        self,
        tenant_id: str,
        agent_id: str,
        change: ProfileChange,
        read: tuple[list[str], str | None] | None,
        widen: Widen,
        now: int,
    ) -> ScriptCall:
        """The profile script of one agent: `read` is (served groups, raw own groups) when its groups change."""
        k = self.keys
        served, expect_own, named = _KEEP_GROUPS, _NOT_CHECKED, []
        if read is not None:
            old, raw_own = read
            if change.groups is not None:
                own = list(change.groups)
            else:  # a regroup: from the own groups as read, which must still be those when the script runs
                own = split_csv(raw_own) if raw_own is not None else old
                expect_own = raw_own or ""
            new = widen(own)
            served = ",".join(new)
            named = sorted({*old, *new})
        fields = change.hash_fields()
        if change.regroup and change.groups is None and read is not None and read[1] is None:
            fields += ["own_groups", ",".join(read[0])]  # kept apart from now on, so the revert is exact
        return ScriptCall(
            lua.PROFILE,
            keys=[
                k.agent(tenant_id, agent_id),
                k.tenant_agents(tenant_id),
                k.presence_pending(tenant_id),
                *(k.group_agents(tenant_id, g) for g in named),
            ],
            args=[agent_id, now, served, ",".join(named), expect_own, *fields],
        )

    async def _read_group_fields(self, tenant_id: str, agent_ids: Sequence[str]) -> list[tuple[list[str], str | None]]:
        """Each agent's served groups and its raw `own_groups` field (None when not kept apart), in one round trip."""
        if not agent_ids:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for agent_id in agent_ids:
            pipe.hmget(self.keys.agent(tenant_id, agent_id), ["groups", "own_groups"])
        return [
            (split_csv(text(groups or b"")), None if own is None else text(own)) for groups, own in await pipe.execute()
        ]

    async def _read_groups(self, tenant_id: str, agent_ids: Sequence[str]) -> list[list[str]]:
        """The groups each agent's hash names now, in one round trip."""
        if not agent_ids:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for agent_id in agent_ids:
            pipe.hget(self.keys.agent(tenant_id, agent_id), "groups")
        return [[g for g in text(raw or b"").split(",") if g] for raw in await pipe.execute()]

    async def set_multiplier(self, tenant_id: str, agent_ids: Iterable[str], multiplier: float) -> list[str]:
        """Set the surge capacity factor of several agents; returns those that changed (their records are sent)."""
        change = ProfileChange(multiplier=multiplier)
        return await self.apply_profiles(tenant_id, [(a, change) for a in agent_ids])

    async def add_agents(
        self, tenant_id: str, agents: Sequence[RosterAgent], *, publish: bool = True, from_roster: bool = False
    ) -> list[str]:
        """Create or update agents from roster entries (temporary agents too); returns those that changed.

        `from_roster`: the entries come from the roster file, and each hash keeps its entry's digest."""
        await self.redis.sadd(self.keys.presence_tenants(), tenant_id)
        changes = [
            (
                a.agent_id,
                ProfileChange(
                    groups=a.groups,
                    languages=a.languages,
                    capacity=a.capacity.as_dict(),
                    display_name=a.display_name,
                    temporary=a.temporary,
                    proficiency=a.proficiency,
                    roster_entry=a.entry_digest() if from_roster else None,
                ),
            )
            for a in agents
        ]
        return await self.apply_profiles(tenant_id, changes, publish=publish)

    async def add_agent(self, tenant_id: str, agent: RosterAgent, *, publish: bool = True) -> bool:
        """Create or update one agent from its roster entry."""
        return bool(await self.add_agents(tenant_id, [agent], publish=publish))

    async def load_roster(self, roster: Roster, *, prune: bool = True) -> int:
        """Write the profile of every configured agent whose entry is new or changed since presence last wrote it
        (never its status or session); returns how many agents changed.

        An entry presence already wrote (same digest in the hash's `roster_entry`) is left alone, so a restart or a
        reload of an unchanged file keeps what operators changed live (levels, groups, capacity); an edited entry
        is written as a whole. With `prune`, a rostered (not temporary) agent of a tenant in the roster that the
        roster no longer lists is removed (offline first). Tenants the roster does not mention are left alone.
        """
        changed = 0
        for tenant in roster.tenants:
            fresh = await self._unwritten_entries(tenant.tenant_id, tenant.agents)
            changed += len(await self.add_agents(tenant.tenant_id, fresh, from_roster=True))
            if prune:
                listed = {a.agent_id for a in tenant.agents}
                for gone in await self.list_agents(tenant.tenant_id):
                    if gone.agent_id not in listed and not gone.temporary:
                        await self.remove_agent(tenant.tenant_id, gone.agent_id, "roster")
                        changed += 1
        log.info("roster_loaded", tenants=len(roster.tenants), changed=changed)
        return changed

    async def _unwritten_entries(self, tenant_id: str, agents: Sequence[RosterAgent]) -> list[RosterAgent]:
        """The roster entries whose agent hash does not hold them yet (new, edited, or the agent was removed)."""
        if not agents:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for agent in agents:
            pipe.hmget(self.keys.agent(tenant_id, agent.agent_id), ["roster_entry", "removed"])
        rows = await pipe.execute()
        return [
            agent
            for agent, (entry, removed) in zip(agents, rows, strict=True)
            if entry is None or text(entry) != agent.entry_digest() or (removed is not None and text(removed) == "1")
        ]

    async def remove_agent(self, tenant_id: str, agent_id: str, changed_by: str) -> bool:
        """Take an agent out of service: offline first (the router requeues its work), then out of every set."""
        state = await self.get_agent(tenant_id, agent_id)
        if state is None:
            return False
        if state.status is not Status.OFFLINE:
            await self.transition(tenant_id, agent_id, Status.OFFLINE, changed_by, "removed")
        k = self.keys
        code = lua.RETRY
        for _ in range(_GROUP_RETRIES):
            (groups,) = await self._read_groups(tenant_id, [agent_id])
            code, _ = await lua.REMOVE(
                self.redis,
                keys=[
                    k.agent(tenant_id, agent_id),
                    k.tenant_agents(tenant_id),
                    k.heartbeats(tenant_id),
                    k.wrap_up_timers(tenant_id),
                    k.presence_pending(tenant_id),
                    k.removed_agents(tenant_id),
                    *(k.group_agents(tenant_id, g) for g in groups),
                ],
                args=[agent_id, self.now_ms(), ",".join(groups)],
            )
            if code != lua.RETRY:
                break
        else:
            raise PresenceError(f"groups of {tenant_id}/{agent_id} kept changing during its removal")
        await self.publish(tenant_id, [agent_id])
        return bool(code == lua.CHANGED)

    # --- logins of temporary agents --------------------------------------------------------------------------

    async def issue_temporary_logins(self, tenant_id: str, agent_ids: Sequence[str]) -> dict[str, str]:
        """Give each (temporary) agent a new random password and return them; only the salted digest is kept.

        Generated passwords carry 128 random bits, so a salted sha256 is enough to keep them.
        """
        passwords = {agent_id: secrets.token_urlsafe(16) for agent_id in agent_ids}
        pipe = self.redis.pipeline(transaction=False)
        for agent_id, password in passwords.items():
            salt = secrets.token_hex(8)
            pipe.hset(
                self.keys.agent(tenant_id, agent_id),
                mapping={"login_salt": salt, "login_sha256": hash_secret(salt, password)},
            )
        await pipe.execute()
        return passwords

    async def check_temporary_login(self, tenant_id: str, agent_id: str, password: str) -> bool:
        """True when a temporary agent (added by an operator, not removed) logs in with the password it was issued.

        The gateway's login endpoint asks this for agents its roster file does not list."""
        salt, digest, temporary, removed = await self.redis.hmget(
            self.keys.agent(tenant_id, agent_id), ["login_salt", "login_sha256", "temporary", "removed"]
        )
        if not salt or not digest or temporary != b"1" or removed == b"1":
            return False
        return check_secret(text(salt), password, text(digest))

    # --- reads ----------------------------------------------------------------------------------------------

    async def get_agent(self, tenant_id: str, agent_id: str) -> AgentState | None:
        """The agent's current state, or None when unknown."""
        raw = await self.redis.hgetall(self.keys.agent(tenant_id, agent_id))
        return parse_agent_hash(tenant_id, agent_id, raw) if presence_knows(raw) else None

    async def list_agents(self, tenant_id: str) -> list[AgentState]:
        """Every agent of a tenant, sorted by id."""
        ids = sorted(text(m) for m in await self.redis.smembers(self.keys.tenant_agents(tenant_id)))
        states = await self.get_agents(tenant_id, ids)
        return [s for s in states if s is not None]

    async def group_members(self, tenant_id: str, group: str) -> list[str]:
        """Agent ids of a skill group."""
        members = await self.redis.smembers(self.keys.group_agents(tenant_id, group))
        return sorted(text(m) for m in members)

    async def get_agents(self, tenant_id: str, agent_ids: Sequence[str]) -> list[AgentState | None]:
        """The states of several agents (None for unknown ones), in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for agent_id in agent_ids:
            pipe.hgetall(self.keys.agent(tenant_id, agent_id))
        raws = await pipe.execute()
        return [
            parse_agent_hash(tenant_id, a, raw) if presence_knows(raw) else None
            for a, raw in zip(agent_ids, raws, strict=True)
        ]

    # --- records --------------------------------------------------------------------------------------------

    async def publish(self, tenant_id: str, agent_ids: Sequence[str]) -> bool:
        """Send the current state of these agents as AgentPresence records; clear their pending marks on ack.

        Returns False when the broker did not ack (the marks stay, the sweep republishes later).
        """
        if not agent_ids:
            return True
        pipe = self.redis.pipeline(transaction=False)
        for agent_id in agent_ids:
            pipe.hgetall(self.keys.agent(tenant_id, agent_id))
        pipe.hget(self.keys.surge_state(tenant_id), "active")
        *raws, active = await pipe.execute()
        now = self.now_ms()
        # the profile in force as the records are written: a router that sees another name than it knows re-reads it
        surge = text(active or b"")
        # a hash presence has not written (only the router's fields) has no record to give (a removed one has)
        states = [
            parse_agent_hash(tenant_id, a, raw) for a, raw in zip(agent_ids, raws, strict=True) if presence_wrote(raw)
        ]
        states, records = _records(states, now, surge)
        try:
            await self.producer.send_many(self.producer.topics.presence, records)
        except BrokerUnavailable as exc:
            log.warning("presence_publish_failed", tenant_id=tenant_id, agents=len(records), error=str(exc))
            return False
        await run_pipelined(
            self.redis,
            [
                ScriptCall(
                    lua.CLEAR_PENDING,
                    keys=[self.keys.agent(tenant_id, s.agent_id), self.keys.presence_pending(tenant_id)],
                    args=[s.agent_id, s.presence_version],
                )
                for s in states
            ],
        )
        return True


def _records(
    states: list[AgentState], now_ms: int, surge: str
) -> tuple[list[AgentState], list[tuple[str, AgentPresence]]]:
    """The states that have a record, and their records: an agent whose hash holds a value out of bounds is
    skipped, logged and counted, so one bad value never stops every other agent's record (nor the sweep).

    Its pending mark stays: the sweep retries it (and logs it again) until an operator repairs the value."""
    kept: list[AgentState] = []
    records: list[tuple[str, AgentPresence]] = []
    for state in states:
        try:
            record = to_presence_record(state, now_ms, surge)
        except AgentHashInvalid as exc:
            RECORDS_SKIPPED.inc()
            log.error("presence_record_skipped", tenant_id=state.tenant_id, agent_id=state.agent_id, error=str(exc))
            continue
        kept.append(state)
        records.append((presence_key(state.tenant_id, state.agent_id), record))
    return kept, records
