-- Start a new session of an agent: the new epoch fences every older session (their heartbeats, status changes
-- and logouts carry a lower epoch). An offline agent becomes initial_status (with its DESK_EVENT_STATUS).
-- Needs the desk_append and presence_status libraries.
-- ARGV[7] (optional): an epoch the new one must exceed (a gateway logging a desk in again after Redis lost the
-- agent's session: the desk's epoch never goes backwards).
-- Returns {code, new session_epoch, presence_version, status_changed (1/0)}; code -2 = unknown agent.
local agent_key, heartbeats_key, pending_key = KEYS[1], KEYS[2], KEYS[3]
local outbox_key, desk_seq_key, notify = KEYS[4], KEYS[5], KEYS[6]
local agent_id, now, initial_status, gateway_instance = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local event, changed_by = ARGV[5], ARGV[6]
local floor = tonumber(ARGV[7] or '0') or 0

if not known(agent_key) then return {-2, 0, 0, 0} end
if (tonumber(redis.call('HGET', agent_key, 'session_epoch') or '0') or 0) < floor then
  redis.call('HSET', agent_key, 'session_epoch', floor)
end
local epoch = redis.call('HINCRBY', agent_key, 'session_epoch', 1)
redis.call('HSET', agent_key, 'last_heartbeat_ms', now, 'gateway_instance', gateway_instance)
redis.call('ZADD', heartbeats_key, now, agent_id)
local cur = redis.call('HGET', agent_key, 'status') or 'offline'
local changed = 0
if cur == 'offline' then
  redis.call('HSET', agent_key, 'status', initial_status, 'status_since_ms', now, 'status_changed_by', changed_by,
    'status_reason', 'login')
  desk_append(outbox_key, desk_seq_key, notify, agent_id, event)
  changed = 1
end
local v = mark_pending(agent_key, pending_key, agent_id, now)
return {1, epoch, v, changed}
