"""An agent's presence as plain data: parsing the agent hash, building AgentPresence records and desk events.

Pure functions, no I/O: the store reads the hash and hands it here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from google.protobuf.timestamp_pb2 import Timestamp

from switchboard.contracts import AgentPresence, AgentStatus, Channel, ChannelCapacity, DeskEvent, DeskEventType
from switchboard.routing.skills import MAX_LEVEL, MIN_LEVEL, format_proficiency, parse_proficiency
from switchboard.routing.surge import MAX_FACTOR
from switchboard.state.roster import CHANNELS, MAX_SLOTS

# Counters and times are int64 on the record.
_INT64 = 2**63


class Status(StrEnum):
    """Agent status as stored in the agent hash (`status` field)."""

    AVAILABLE = "available"
    BUSY = "busy"
    AWAY = "away"
    WRAP_UP = "wrap_up"
    OFFLINE = "offline"


STATUS_TO_PROTO: dict[Status, AgentStatus.ValueType] = {
    Status.AVAILABLE: AgentStatus.AGENT_STATUS_AVAILABLE,
    Status.BUSY: AgentStatus.AGENT_STATUS_BUSY,
    Status.AWAY: AgentStatus.AGENT_STATUS_AWAY,
    Status.WRAP_UP: AgentStatus.AGENT_STATUS_WRAP_UP,
    Status.OFFLINE: AgentStatus.AGENT_STATUS_OFFLINE,
}
PROTO_TO_STATUS = {v: k for k, v in STATUS_TO_PROTO.items()}

CHANNEL_TO_PROTO: dict[str, Channel.ValueType] = {
    "chat": Channel.CHANNEL_CHAT,
    "email": Channel.CHANNEL_EMAIL,
    "phone": Channel.CHANNEL_PHONE,
}


@dataclass
class AgentState:
    """One agent as the agent hash holds it (presence's fields and the router's load fields)."""

    tenant_id: str
    agent_id: str
    status: Status = Status.OFFLINE
    session_epoch: int = 0
    # What the agent serves now: its own groups, plus the groups a surge profile's pools add while it is on.
    groups: list[str] = field(default_factory=list)
    languages: list[str] = field(default_factory=list)
    capacity: dict[str, int] = field(default_factory=dict)
    # The agent's own groups (roster, operator changes), which `groups` goes back to when the profile ends.
    own_groups: list[str] = field(default_factory=list)
    used: dict[str, int] = field(default_factory=dict)
    multiplier: float = 1.0
    display_name: str = ""
    temporary: bool = False
    last_heartbeat_ms: int = 0
    status_since_ms: int = 0
    status_changed_by: str = ""
    status_reason: str = ""
    wrap_up_until_ms: int = 0
    presence_version: int = 0
    changed_ms: int = 0
    gateway_instance: str = ""
    # level 1-5 per group the agent has one in (the `proficiency` field, "presales:5,orders:3")
    proficiency: dict[str, int] = field(default_factory=dict)

    def effective_capacity(self) -> dict[str, int]:
        """Slots per channel after the surge multiplier: floor(cap * multiplier)."""
        return {ch: math.floor(slots * self.multiplier) for ch, slots in self.capacity.items()}

    def load(self) -> float:
        """The highest used/capacity ratio over channels with capacity (0 when idle)."""
        ratios = [self.used.get(ch, 0) / cap for ch, cap in self.effective_capacity().items() if cap > 0]
        return max(ratios, default=0.0)

    def out_of_bounds(self) -> list[str]:
        """Fields whose stored value no AgentPresence record may carry (`cap:chat=41865718795`); empty when all fit.

        The operator API and the roster refuse such values, but a hash written by hand, or before a bound existed,
        may hold one; it must not stop the records of every other agent."""
        problems = [f"cap:{ch}={n}" for ch, n in self.capacity.items() if not 0 <= n <= MAX_SLOTS]
        if not 0 < self.multiplier <= MAX_FACTOR:
            problems.append(f"multiplier={self.multiplier}")
        problems += [f"proficiency:{g}={n}" for g, n in self.proficiency.items() if not MIN_LEVEL <= n <= MAX_LEVEL]
        problems += [f"{name}={value}" for name, value in self._counters().items() if not 0 <= value < _INT64]
        return problems

    def _counters(self) -> dict[str, int]:
        return {
            "session_epoch": self.session_epoch,
            "presence_version": self.presence_version,
            "last_heartbeat_ms": self.last_heartbeat_ms,
            "status_since_ms": self.status_since_ms,
            "changed_ms": self.changed_ms,
            "wrap_up_until_ms": self.wrap_up_until_ms,
        }


class AgentHashInvalid(ValueError):
    """An agent hash holds a value out of bounds (see `AgentState.out_of_bounds`): it has no valid record."""


@dataclass(frozen=True)
class ProfileChange:
    """What to change of an agent's profile; None leaves a field as it is.

    `groups` are the agent's own groups; what it serves is them widened by the surge profile in force (the store's
    `Widen`). `regroup` recomputes what it serves from the own groups in its hash (a profile switched on or off).
    """

    groups: Sequence[str] | None = None
    languages: Sequence[str] | None = None
    capacity: Mapping[str, int] | None = None
    display_name: str | None = None
    multiplier: float | None = None
    temporary: bool | None = None
    regroup: bool = False
    proficiency: Mapping[str, int] | None = None
    # the digest of the roster entry this change comes from (`roster_entry` field; None: not from the roster)
    roster_entry: str | None = None

    def hash_fields(self) -> list[str | int]:
        """The agent-hash field/value pairs (flat) of everything but the served groups; raises ValueError on bad
        values."""
        fields: list[str | int] = []
        if self.groups is not None:
            fields += ["own_groups", ",".join(self.groups)]
        if self.languages is not None:
            fields += ["languages", ",".join(self.languages)]
        for channel, slots in (self.capacity or {}).items():
            if channel not in CHANNELS or not 0 <= slots <= MAX_SLOTS:
                raise ValueError(f"bad capacity {channel}={slots}")
            fields += [f"cap:{channel}", int(slots)]
        if self.display_name is not None:
            fields += ["display_name", self.display_name]
        if self.multiplier is not None:
            if not self.multiplier > 0:
                raise ValueError("multiplier must be > 0")
            fields += ["multiplier", repr(float(self.multiplier))]
        if self.temporary is not None:
            fields += ["temporary", "1" if self.temporary else "0"]
        if self.proficiency is not None:
            bad = {
                g: n
                for g, n in self.proficiency.items()
                if not MIN_LEVEL <= n <= MAX_LEVEL or not g or "," in g or ":" in g
            }
            if bad:
                raise ValueError(f"bad proficiency {bad} (levels {MIN_LEVEL}-{MAX_LEVEL})")
            fields += ["proficiency", format_proficiency(dict(self.proficiency))]
        if self.roster_entry is not None:
            fields += ["roster_entry", self.roster_entry]
        return fields


def split_csv(value: str) -> list[str]:
    """`"a,b"` -> `["a", "b"]`; empty parts dropped."""
    return [part for part in value.split(",") if part]


def _int(fields: dict[str, str], name: str) -> int:
    try:
        return int(fields.get(name) or 0)
    except ValueError:
        return 0


def text(value: bytes | str) -> str:
    """A Redis reply as str."""
    return value.decode() if isinstance(value, bytes) else value


def presence_wrote(raw: Mapping[bytes | str, bytes | str]) -> bool:
    """Whether presence has written an agent hash (as HGETALL returns it, bytes keys): it has a `status`. A hash
    holding only the router's fields (`used:*`, written back by the router's rebuild after Redis lost its data,
    before presence restored the agent) is not one (the `written` rule of lua/presence_status.lua)."""
    return b"status" in raw


def presence_knows(raw: Mapping[bytes | str, bytes | str]) -> bool:
    """Whether an agent hash is an agent presence has written and not removed (`known` in the Lua library)."""
    return presence_wrote(raw) and raw.get(b"removed") != b"1"


def parse_agent_hash(tenant_id: str, agent_id: str, raw: Mapping[bytes | str, bytes | str]) -> AgentState:
    """An AgentState from the agent hash (bytes or str keys); missing fields get defaults."""
    fields = {text(k): text(v) for k, v in raw.items()}
    groups = split_csv(fields.get("groups", ""))
    try:
        status = Status(fields.get("status", "offline"))
    except ValueError:
        status = Status.OFFLINE
    try:
        multiplier = float(fields.get("multiplier") or 1.0)
    except ValueError:
        multiplier = 1.0
    if not math.isfinite(multiplier):
        # floor(slots × inf) has no value: read like any other unreadable multiplier
        multiplier = 1.0
    return AgentState(
        tenant_id=tenant_id,
        agent_id=agent_id,
        status=status,
        session_epoch=_int(fields, "session_epoch"),
        groups=groups,
        languages=split_csv(fields.get("languages", "")),
        capacity={ch: _int(fields, f"cap:{ch}") for ch in CHANNELS},
        # agents written before own groups were kept apart serve exactly their own
        own_groups=split_csv(fields["own_groups"]) if "own_groups" in fields else groups,
        used={ch: _int(fields, f"used:{ch}") for ch in CHANNELS},
        multiplier=multiplier,
        display_name=fields.get("display_name", ""),
        temporary=fields.get("temporary") == "1",
        last_heartbeat_ms=_int(fields, "last_heartbeat_ms"),
        status_since_ms=_int(fields, "status_since_ms"),
        status_changed_by=fields.get("status_changed_by", ""),
        status_reason=fields.get("status_reason", ""),
        wrap_up_until_ms=_int(fields, "wrap_up_until_ms"),
        presence_version=_int(fields, "presence_version"),
        changed_ms=_int(fields, "changed_ms"),
        gateway_instance=fields.get("gateway_instance", ""),
        proficiency=parse_proficiency(fields.get("proficiency", "")),
    )


def ms_timestamp(ms: int) -> Timestamp:
    """A protobuf Timestamp from epoch milliseconds."""
    ts = Timestamp()
    ts.FromMilliseconds(ms)
    return ts


def presence_key(tenant_id: str, agent_id: str) -> str:
    """The record key on the compacted presence topic."""
    return f"{tenant_id}/{agent_id}"


def to_presence_record(state: AgentState, now_ms: int, surge_profile: str = "") -> AgentPresence:
    """The AgentPresence record of an agent's current state (`surge_profile`: the tenant's profile in force).

    Raises AgentHashInvalid when a field is out of bounds."""
    problems = state.out_of_bounds()
    if problems:
        raise AgentHashInvalid(f"{state.tenant_id}/{state.agent_id}: out of bounds: {', '.join(problems)}")
    record = AgentPresence(
        tenant_id=state.tenant_id,
        agent_id=state.agent_id,
        status=STATUS_TO_PROTO[state.status],
        session_epoch=state.session_epoch,
        skill_groups=state.groups,
        languages=state.languages,
        capacity=[ChannelCapacity(channel=CHANNEL_TO_PROTO[ch], slots=n) for ch, n in state.capacity.items()],
        changed_at=ms_timestamp(state.changed_ms or state.status_since_ms or now_ms),
        changed_by=state.status_changed_by,
        reason=state.status_reason,
        gateway_instance=state.gateway_instance,
        capacity_multiplier=state.multiplier,
        display_name=state.display_name,
        presence_version=state.presence_version,
        temporary=state.temporary,
        surge_profile=surge_profile,
        proficiency=state.proficiency,
    )
    if state.last_heartbeat_ms:
        record.last_heartbeat_at.CopyFrom(ms_timestamp(state.last_heartbeat_ms))
    if state.status is Status.WRAP_UP and state.wrap_up_until_ms:
        record.wrap_up_until.CopyFrom(ms_timestamp(state.wrap_up_until_ms))
    return record


def status_desk_event(
    tenant_id: str, agent_id: str, status: Status, now_ms: int, changed_by: str, reason: str, wrap_up_until_ms: int = 0
) -> DeskEvent:
    """The DESK_EVENT_STATUS telling an agent's desktop its status changed (seq is given on append)."""
    event = DeskEvent(
        tenant_id=tenant_id,
        agent_id=agent_id,
        type=DeskEventType.DESK_EVENT_STATUS,
        at=ms_timestamp(now_ms),
        status=STATUS_TO_PROTO[status],
        attributes={"changed_by": changed_by, "reason": reason},
    )
    if wrap_up_until_ms:
        event.attributes["wrap_up_until_ms"] = str(wrap_up_until_ms)
    return event
