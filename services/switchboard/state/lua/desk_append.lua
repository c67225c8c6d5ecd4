-- Library desk_append(outbox, seq_key, notify, agent_id, event): append one serialized DeskEvent to an agent's
-- desk outbox and return the seq it got; desk_append_fields(..., fields) appends the event as named fields (a flat
-- name, value, ... list that state/outbox.py `outbox_event` turns into the DeskEvent, built from proto/). For scripts that must tell the desktop in their own atomic step; the
-- caller declares the outbox, its seq counter and the tenant's desk-notify channel in its own KEYS.
-- Entry id `<seq>-1`, field `e` = the event; "<agent_id> <seq>" is published on the desk-notify channel.

-- Outboxes keep at most about this many events; gateways trim what desktops acked long before that.
local OUTBOX_MAXLEN = 10000

local function desk_append(outbox, seq_key, notify, agent_id, event)
  local seq = redis.call('INCR', seq_key)
  redis.call('XADD', outbox, 'MAXLEN', '~', OUTBOX_MAXLEN, seq .. '-1', 'e', event)
  redis.call('PUBLISH', notify, agent_id .. ' ' .. seq)
  return seq
end

local function desk_append_fields(outbox, seq_key, notify, agent_id, fields)
  local seq = redis.call('INCR', seq_key)
  redis.call('XADD', outbox, 'MAXLEN', '~', OUTBOX_MAXLEN, seq .. '-1', unpack(fields))
  redis.call('PUBLISH', notify, agent_id .. ' ' .. seq)
  return seq
end
