"""Appending to an agent's desk outbox: the one way events reach an agent's desktop.

An outbox is a Redis stream per agent whose entry ids are `<seq>-1`, where seq is the agent's gapless delivery
number. A desktop that acked seq N resumes with `XRANGE outbox (N-1 +` on any gateway replica. After an append,
"<agent_id> <seq>" is published on the tenant's desk-notify channel so gateways need not poll.

`DESK_APPEND_LUA` (`lua/desk_append.lua`) is a Lua function for scripts that change ownership and must tell the
desktop in the same atomic step (the router's claim scripts include it); `append_desk_event` is the same thing
from Python.
"""

from __future__ import annotations

from redis.asyncio import Redis

from switchboard.contracts import DeskEvent
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
    events = []
    for entry_id, fields in entries:
        event = DeskEvent.FromString(fields[b"e"])
        event.seq = int(entry_id.split(b"-")[0])
        events.append(event)
    return events
