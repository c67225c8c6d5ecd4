"""Appending to an agent's desk outbox: the one way events reach an agent's desktop.

An outbox is a Redis stream per agent whose entry ids are `<seq>-1`, where seq is the agent's gapless delivery
number. A desktop that acked seq N resumes with `XRANGE outbox (N-1 +` on any gateway replica. After an append,
"<agent_id> <seq>" is published on the tenant's desk-notify channel so gateways need not poll.

`DESK_APPEND_LUA` (`lua/desk_append.lua`) holds the Lua functions for scripts that change ownership and must tell
the desktop in the same atomic step (the router's claim scripts include it): `desk_append` takes a serialized
DeskEvent, `desk_append_fields` the event as named fields, so that no script encodes protobuf itself;
`append_desk_event` appends from Python and `outbox_event` is the one reader of an entry.
"""

from __future__ import annotations

from collections.abc import Mapping

from redis.asyncio import Redis

from switchboard.contracts import AgentStatus, DeskEvent, DeskEventType, RoutingEventType
from switchboard.runtime.lua import LuaScript, lua_file
from switchboard.state.keys import Keys

DESK_APPEND_LUA = lua_file(__file__, "desk_append")

_APPEND = LuaScript.load(__file__, "append_desk_event", libs=(DESK_APPEND_LUA,))


async def append_desk_event(redis: Redis, keys: Keys, event: DeskEvent) -> int:
    """Append one event to its agent's outbox and return the seq it got (event.seq is ignored)."""
    seq = await _APPEND(
        redis,
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
    rule, by, conf (what classified the conversation), inst, wrap_up, and for status events status, changed_by,
    reason. Built with the classes generated from
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
        routing.classified_by, routing.confidence = text("by"), float(text("conf") or 0)
        routing.wrap_up_code = text("wrap_up")
    elif text("rule"):
        event.attributes["rule"] = text("rule")
    return event
