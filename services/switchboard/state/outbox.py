"""Appending to an agent's desk outbox: the one way events reach an agent's desktop.

An outbox is a Redis stream per agent whose entry ids are `<seq>-1`, where seq is the agent's gapless delivery
number. A desktop that acked seq N resumes with `XRANGE outbox (N-1 +` on any gateway replica. After an append,
"<agent_id> <seq>" is published on the tenant's desk-notify channel so gateways need not poll.

`DESK_APPEND_LUA` is a Lua function for scripts that change ownership and must tell the desktop in the same atomic
step (the router's claim scripts include it); `append_desk_event` is the same thing from Python.
"""

from __future__ import annotations

from collections.abc import Mapping

from redis.asyncio import Redis

from switchboard.contracts import AgentStatus, DeskEvent, DeskEventType, RoutingEventType
from switchboard.state.keys import Keys

# Outboxes keep at most about this many events; gateways trim what desktops acked long before that.
OUTBOX_MAXLEN = 10_000

# `desk_append` takes a serialized DeskEvent; `desk_append_fields` takes the event as named fields (a flat
# name, value, ... list; see `outbox_event`), so a script never encodes protobuf itself.
DESK_APPEND_LUA = f"""
local function desk_append(outbox, seqkey, channel, agent_id, event)
  local seq = redis.call('INCR', seqkey)
  redis.call('XADD', outbox, 'MAXLEN', '~', {OUTBOX_MAXLEN}, seq .. '-1', 'e', event)
  redis.call('PUBLISH', channel, agent_id .. ' ' .. seq)
  return seq
end

local function desk_append_fields(outbox, seqkey, channel, agent_id, fields)
  local seq = redis.call('INCR', seqkey)
  redis.call('XADD', outbox, 'MAXLEN', '~', {OUTBOX_MAXLEN}, seq .. '-1', unpack(fields))
  redis.call('PUBLISH', channel, agent_id .. ' ' .. seq)
  return seq
end
"""

_APPEND_SCRIPT = DESK_APPEND_LUA + "\nreturn desk_append(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2])\n"


async def append_desk_event(redis: Redis, keys: Keys, event: DeskEvent) -> int:
    """Append one event to its agent's outbox and return the seq it got (event.seq is ignored)."""
    script = redis.register_script(_APPEND_SCRIPT)
    seq = await script(
        keys=[
            keys.desk_outbox(event.tenant_id, event.agent_id),
            keys.desk_seq(event.tenant_id, event.agent_id),
            keys.desk_notify(event.tenant_id),
        ],
        args=[event.agent_id, event.SerializeToString()],
    )
    return int(seq)


async def read_outbox(
    redis: Redis, keys: Keys, tenant_id: str, agent_id: str, after_seq: int, count: int = 500
) -> list[DeskEvent]:
    """Events of an agent's outbox with seq > after_seq, in order, with their seq filled in."""
    outbox = keys.desk_outbox(tenant_id, agent_id)
    entries: list[tuple[bytes, dict[bytes, bytes]]] = await redis.xrange(
        outbox, min=f"({after_seq}-1", max="+", count=count
    )  # type: ignore[assignment]
    return [outbox_event(entry_id, fields) for entry_id, fields in entries]


def outbox_event(entry_id: bytes, fields: Mapping[bytes, bytes]) -> DeskEvent:
    """The DeskEvent of one outbox entry, with its seq: a serialized event (`e`, appended from Python) or named
    fields (appended by the router's scripts): tenant, agent, at (ms), type (a DeskEventType name without prefix,
    lower case), conv, epoch, group, msg (InboundMessage bytes), deadline (ms), routing (a RoutingEventType name),
    rule, inst, wrap_up, and for status events status, changed_by, reason. Built with the classes generated from
    proto/, so the schema lives there only."""
    raw = fields.get(b"e")
    event = DeskEvent.FromString(raw) if raw is not None else _from_fields(fields)
    event.seq = int(entry_id.split(b"-", 1)[0])
    return event


def _from_fields(fields: Mapping[bytes, bytes]) -> DeskEvent:
    def text(name: str) -> str:
        return fields.get(name.encode(), b"").decode()

    def number(name: str) -> int:
        value = text(name)
        return int(float(value)) if value else 0

    event = DeskEvent(
        tenant_id=text("tenant"),
        agent_id=text("agent"),
        type=DeskEventType.Value("DESK_EVENT_" + text("type").upper()),
        conversation_id=text("conv"),
        epoch=number("epoch"),
        skill_group=text("group"),
    )
    event.at.FromMilliseconds(number("at"))
    if b"msg" in fields:
        event.message.ParseFromString(fields[b"msg"])
    if number("deadline"):
        event.offer_deadline.FromMilliseconds(number("deadline"))
    if text("status"):
        event.status = AgentStatus.Value("AGENT_STATUS_" + text("status").upper())
    for name in ("changed_by", "reason"):
        if text(name):
            event.attributes[name] = text(name)
    if text("routing"):
        routing = event.routing
        routing.tenant_id, routing.conversation_id = event.tenant_id, event.conversation_id
        routing.type = RoutingEventType.Value("ROUTING_EVENT_" + text("routing").upper())
        routing.at.CopyFrom(event.at)
        routing.skill_group, routing.agent_id, routing.epoch = event.skill_group, event.agent_id, event.epoch
        routing.rule_matched, routing.router_instance = text("rule"), text("inst")
        routing.wrap_up_code = text("wrap_up")
    elif text("rule"):
        event.attributes["rule"] = text("rule")
    return event
