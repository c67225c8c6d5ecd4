-- Change an agent's status (agent, operator, router or the sweep) and append its DESK_EVENT_STATUS.
-- Needs the desk_append and presence_status libraries.
-- Returns {code, session_epoch, presence_version, desk_seq}: 1 changed, 0 unchanged, -1 stale session,
-- -2 unknown agent, -3 offline (only a login brings an agent back).
local agent_key, heartbeats_key, wrap_up_key, pending_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local outbox_key, desk_seq_key, notify = KEYS[5], KEYS[6], KEYS[7]
local agent_id, new, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local expect_epoch = ARGV[4]      -- '' = any session
local condition = ARGV[5]         -- '' | 'stale_before' | 'wrap_up_due' (the sweep)
local cutoff_ms = ARGV[6]
local wrap_up_until_ms = ARGV[7]
local changed_by, reason, event = ARGV[8], ARGV[9], ARGV[10]

if not known(agent_key) then return {-2, 0, 0, 0} end
local cur = redis.call('HGET', agent_key, 'status') or 'offline'
local epoch = (tonumber(redis.call('HGET', agent_key, 'session_epoch')) or 0)
if expect_epoch ~= '' and tonumber(expect_epoch) ~= epoch then return {-1, epoch, 0, 0} end
if condition == 'stale_before' then
  -- the sweep: only an agent still silent since before the cutoff goes offline (another replica may have won)
  if cur == 'offline' then redis.call('ZREM', heartbeats_key, agent_id) return {0, epoch, 0, 0} end
  local last = (tonumber(redis.call('HGET', agent_key, 'last_heartbeat_ms')) or 0)
  if last >= tonumber(cutoff_ms) then return {0, epoch, 0, 0} end
elseif condition == 'wrap_up_due' then
  if cur ~= 'wrap_up' then redis.call('ZREM', wrap_up_key, agent_id) return {0, epoch, 0, 0} end
  local due = (tonumber(redis.call('HGET', agent_key, 'wrap_up_until_ms')) or 0)
  if due > now then return {0, epoch, 0, 0} end
end
-- only a login (its own script) brings an offline agent back
if cur == 'offline' then return {-3, epoch, 0, 0} end
-- wrap_up -> wrap_up restarts the timer; any other same-status change is no change
if cur == new and new ~= 'wrap_up' then return {0, epoch, 0, 0} end
local v = presence_set_status(agent_key, pending_key, agent_id, new, now, changed_by, reason)
if new == 'wrap_up' then
  redis.call('HSET', agent_key, 'wrap_up_until_ms', wrap_up_until_ms)
  redis.call('ZADD', wrap_up_key, wrap_up_until_ms, agent_id)
else
  redis.call('HDEL', agent_key, 'wrap_up_until_ms')
  redis.call('ZREM', wrap_up_key, agent_id)
end
if new == 'offline' then redis.call('ZREM', heartbeats_key, agent_id) end
local seq = desk_append(outbox_key, desk_seq_key, notify, agent_id, event)
return {1, epoch, v, seq}
