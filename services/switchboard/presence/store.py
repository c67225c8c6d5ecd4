"""PresenceStore: the one way an agent's presence changes (login, heartbeat, status, profile, removal).

Every change is one atomic Redis script (`presence.lua`); after it, the agent's current state is published as an
AgentPresence record on the compacted presence topic (key `tenant/agent`), and a status change also appends a
DESK_EVENT_STATUS to the agent's desk outbox inside the same script. The gateway calls this class directly.

If Kafka does not ack a record, the change stays in Redis and in the tenant's pending set; the sweep republishes
it. Records carry `presence_version`, so a consumer can drop one that arrives after a newer one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence

from redis.asyncio import Redis

from switchboard.presence import lua
from switchboard.presence.errors import AgentOffline, HeartbeatResult, PresenceError, StaleSession, UnknownAgent
from switchboard.presence.model import (
    AgentState,
    Status,
    parse_agent_hash,
    presence_key,
    status_desk_event,
    text,
    to_presence_record,
)
from switchboard.presence.roster import CHANNELS, Roster, RosterAgent
from switchboard.runtime.errors import BrokerUnavailable
from switchboard.runtime.kafka import RecordProducer
from switchboard.runtime.keys import Keys
from switchboard.runtime.logs import get_logger

# The gateway imports the errors from here, next to the store that raises them.
__all__ = ["AgentOffline", "HeartbeatResult", "PresenceError", "PresenceStore", "StaleSession", "UnknownAgent"]

log = get_logger(__name__)

_GROUP_MARK = "\x01"
_KEEP_GROUPS = "\x00"


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
        self._transition = redis.register_script(lua.TRANSITION)
        self._login = redis.register_script(lua.LOGIN)
        self._heartbeat = redis.register_script(lua.HEARTBEAT)
        self._profile = redis.register_script(lua.PROFILE)
        self._remove = redis.register_script(lua.REMOVE)
        self._clear_pending = redis.register_script(lua.CLEAR_PENDING)

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
    ) -> int:
        """Start a new session and return its epoch; every older session of the agent is fenced from now on.

        An offline agent becomes `initial_status`; an agent still online (a reconnect racing the grace period)
        keeps its status.
        """
        now = self.now_ms()
        k = self.keys
        event = status_desk_event(tenant_id, agent_id, initial_status, now, changed_by, "login")
        code, epoch, _, _ = await self._login(
            keys=[
                k.agent(tenant_id, agent_id),
                k.heartbeats(tenant_id),
                k.presence_pending(tenant_id),
                k.desk_outbox(tenant_id, agent_id),
                k.desk_seq(tenant_id, agent_id),
                k.desk_notify(tenant_id),
            ],
            args=[agent_id, now, initial_status.value, gateway_instance, event.SerializeToString(), changed_by],
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
        result = await self._heartbeat(
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
        k = self.keys
        until = now + int((self.wrap_up_s if wrap_up_s is None else wrap_up_s) * 1000) if new is Status.WRAP_UP else 0
        event = status_desk_event(tenant_id, agent_id, new, now, changed_by, reason, until)
        code, *_ = await self._transition(
            keys=[
                k.agent(tenant_id, agent_id),
                k.heartbeats(tenant_id),
                k.wrap_up_timers(tenant_id),
                k.presence_pending(tenant_id),
                k.desk_outbox(tenant_id, agent_id),
                k.desk_seq(tenant_id, agent_id),
                k.desk_notify(tenant_id),
            ],
            args=[
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
                "0",
            ],
        )
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

    # --- profile: skills, languages, capacity, surge multiplier ---------------------------------------------

    async def update_profile(
        self,
        tenant_id: str,
        agent_id: str,
        *,
        groups: Sequence[str] | None = None,
        languages: Sequence[str] | None = None,
        capacity: dict[str, int] | None = None,
        display_name: str | None = None,
        multiplier: float | None = None,
        temporary: bool | None = None,
        publish: bool = True,
    ) -> bool:
        """Change what an agent can do (creating it offline if new); None leaves a field as it is.

        Returns True when something changed (and, with `publish`, its record was sent).
        """
        fields: list[str | int] = []
        if languages is not None:
            fields += ["languages", ",".join(languages)]
        for channel, slots in (capacity or {}).items():
            if channel not in CHANNELS or slots < 0:
                raise ValueError(f"bad capacity {channel}={slots}")
            fields += [f"cap:{channel}", int(slots)]
        if display_name is not None:
            fields += ["display_name", display_name]
        if multiplier is not None:
            if multiplier <= 0:
                raise ValueError("multiplier must be > 0")
            fields += ["multiplier", repr(float(multiplier))]
        if temporary is not None:
            fields += ["temporary", "1" if temporary else "0"]
        k = self.keys
        pre, post = k.group_agents(tenant_id, _GROUP_MARK).split(_GROUP_MARK)
        code, _ = await self._profile(
            keys=[k.agent(tenant_id, agent_id), k.tenant_agents(tenant_id), k.presence_pending(tenant_id)],
            args=[agent_id, self.now_ms(), pre, post, _KEEP_GROUPS if groups is None else ",".join(groups), *fields],
        )
        if code == lua.CHANGED and publish:
            await self.publish(tenant_id, [agent_id])
        return bool(code == lua.CHANGED)

    async def set_multiplier(self, tenant_id: str, agent_ids: Iterable[str], multiplier: float) -> list[str]:
        """Set the surge capacity factor of several agents; returns those that changed (their records are sent)."""
        if multiplier <= 0:
            raise ValueError("multiplier must be > 0")
        k = self.keys
        ids = list(agent_ids)
        changed: list[str] = []
        # pipelined in chunks: a Double 11 factor for 20,000 agents must not take 20,000 round trips
        for start in range(0, len(ids), 1000):
            chunk = ids[start : start + 1000]
            pipe = self.redis.pipeline(transaction=False)
            now = self.now_ms()
            for agent_id in chunk:
                await self._profile(
                    keys=[k.agent(tenant_id, agent_id), k.tenant_agents(tenant_id), k.presence_pending(tenant_id)],
                    args=[agent_id, now, "", "", _KEEP_GROUPS, "multiplier", repr(float(multiplier))],
                    client=pipe,
                )
            results = await pipe.execute()
            changed += [a for a, (code, _) in zip(chunk, results, strict=True) if code == lua.CHANGED]
        await self.publish(tenant_id, changed)
        return changed

    async def load_roster(self, roster: Roster, *, prune: bool = True) -> int:
        """Write every configured agent's profile (never its status or session); returns how many changed.

        With `prune`, a rostered (not temporary) agent of a tenant in the roster that the roster no longer lists is
        removed (offline first). Tenants the roster does not mention are left alone.
        """
        changed = 0
        for tenant in roster.tenants:
            await self.redis.sadd(self.keys.presence_tenants(), tenant.tenant_id)
            ids = [a.agent_id for a in tenant.agents if await self.add_agent(tenant.tenant_id, a, publish=False)]
            await self.publish(tenant.tenant_id, ids)
            changed += len(ids)
            if prune:
                listed = {a.agent_id for a in tenant.agents}
                for gone in await self.list_agents(tenant.tenant_id):
                    if gone.agent_id not in listed and not gone.temporary:
                        await self.remove_agent(tenant.tenant_id, gone.agent_id, "roster")
                        changed += 1
        log.info("roster_loaded", tenants=len(roster.tenants), changed=changed)
        return changed

    async def add_agent(self, tenant_id: str, agent: RosterAgent, *, publish: bool = True) -> bool:
        """Create or update one agent from its roster entry (used for temporary agents too)."""
        await self.redis.sadd(self.keys.presence_tenants(), tenant_id)
        return await self.update_profile(
            tenant_id,
            agent.agent_id,
            groups=agent.groups,
            languages=agent.languages,
            capacity=agent.capacity.as_dict(),
            display_name=agent.display_name,
            temporary=agent.temporary,
            publish=publish,
        )

    async def remove_agent(self, tenant_id: str, agent_id: str, changed_by: str) -> bool:
        """Take an agent out of service: offline first (the router requeues its work), then out of every set."""
        state = await self.get_agent(tenant_id, agent_id)
        if state is None:
            return False
        if state.status is not Status.OFFLINE:
            await self.transition(tenant_id, agent_id, Status.OFFLINE, changed_by, "removed")
        k = self.keys
        pre, post = k.group_agents(tenant_id, _GROUP_MARK).split(_GROUP_MARK)
        code, _ = await self._remove(
            keys=[
                k.agent(tenant_id, agent_id),
                k.tenant_agents(tenant_id),
                k.heartbeats(tenant_id),
                k.wrap_up_timers(tenant_id),
                k.presence_pending(tenant_id),
            ],
            args=[agent_id, self.now_ms(), pre, post],
        )
        await self.publish(tenant_id, [agent_id])
        return bool(code == lua.CHANGED)

    # --- reads ----------------------------------------------------------------------------------------------

    async def get_agent(self, tenant_id: str, agent_id: str) -> AgentState | None:
        """The agent's current state, or None when unknown."""
        raw = await self.redis.hgetall(self.keys.agent(tenant_id, agent_id))
        if not raw or raw.get(b"removed") == b"1":
            return None
        return parse_agent_hash(tenant_id, agent_id, raw)

    async def list_agents(self, tenant_id: str) -> list[AgentState]:
        """Every agent of a tenant, sorted by id."""
        ids = sorted(text(m) for m in await self.redis.smembers(self.keys.tenant_agents(tenant_id)))
        states = await self._read_states(tenant_id, ids)
        return [s for s in states if s is not None]

    async def group_members(self, tenant_id: str, group: str) -> list[str]:
        """Agent ids of a skill group."""
        members = await self.redis.smembers(self.keys.group_agents(tenant_id, group))
        return sorted(text(m) for m in members)

    async def _read_states(self, tenant_id: str, agent_ids: Sequence[str]) -> list[AgentState | None]:
        pipe = self.redis.pipeline(transaction=False)
        for agent_id in agent_ids:
            pipe.hgetall(self.keys.agent(tenant_id, agent_id))
        raws = await pipe.execute()
        return [
            parse_agent_hash(tenant_id, a, raw) if raw and raw.get(b"removed") != b"1" else None
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
        raws = await pipe.execute()
        now = self.now_ms()
        states = [parse_agent_hash(tenant_id, a, raw) for a, raw in zip(agent_ids, raws, strict=True) if raw]
        records = [(presence_key(s.tenant_id, s.agent_id), to_presence_record(s, now)) for s in states]
        try:
            await self.producer.send_many(self.producer.topics.presence, records)
        except BrokerUnavailable as exc:
            log.warning("presence_publish_failed", tenant_id=tenant_id, agents=len(records), error=str(exc))
            return False
        clear = self.redis.pipeline(transaction=False)
        for s in states:
            await self._clear_pending(
                keys=[self.keys.agent(tenant_id, s.agent_id), self.keys.presence_pending(tenant_id)],
                args=[s.agent_id, s.presence_version],
                client=clear,
            )
        await clear.execute()
        return True
