"""Appending to an agent's desk outbox: the one way events reach an agent's desktop.

An outbox is a Redis stream per agent whose entry ids are `<seq>-1`, where seq is the agent's gapless delivery
number. A desktop that acked seq N resumes with `XRANGE outbox (N-1 +` on any gateway replica. After an append,
"<agent_id> <seq>" is published on the tenant's desk-notify channel so gateways need not poll.

`DESK_APPEND_LUA` is a Lua function for scripts that change ownership and must tell the desktop in the same atomic
step (the router's claim scripts include it); `append_desk_event` is the same thing from Python.
"""

from __future__ import annotations

from redis.asyncio import Redis

from switchboard.contracts import DeskEvent
from switchboard.state.keys import Keys

# Outboxes keep at most about this many events; gateways trim what desktops acked long before that.
OUTBOX_MAXLEN = 10_000

DESK_APPEND_LUA = f"""
local function desk_append(outbox, seqkey, channel, agent_id, event)
  local seq = redis.call('INCR', seqkey)
  redis.call('XADD', outbox, 'MAXLEN', '~', {OUTBOX_MAXLEN}, seq .. '-1', 'e', event)
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
    events = []
    for entry_id, fields in entries:
        event = DeskEvent.FromString(fields[b"e"])
        event.seq = int(entry_id.split(b"-")[0])
        events.append(event)
    return events
