-- Record a heartbeat of the agent's current session.
-- Returns 1 (recorded), -1 (stale session), -3 (offline: the desktop must log in again).
local agent_key, heartbeats_key = KEYS[1], KEYS[2]
local agent_id, session_epoch, now = ARGV[1], ARGV[2], ARGV[3]

local epoch = (tonumber(redis.call('HGET', agent_key, 'session_epoch')) or 0)
if epoch ~= tonumber(session_epoch) then return -1 end
local cur = redis.call('HGET', agent_key, 'status')
if not cur or cur == 'offline' then return -3 end
redis.call('HSET', agent_key, 'last_heartbeat_ms', now)
redis.call('ZADD', heartbeats_key, now, agent_id)
return 1
