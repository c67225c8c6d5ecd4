-- Restore one agent hash from its latest AgentPresence record after Redis lost presence's state (presence/rebuild.py).
-- KEYS: agent hash, tenant agents set, heartbeats, wrap-up timers, then the set of each served group.
-- ARGV: agent_id, presence_version, now_ms, status, wrap_up_until_ms, removed (1/0), then field, value, ... pairs.
-- A hash at this version or newer is left alone (idempotent; a first start over live data changes nothing).
-- Returns 1 restored, 0 kept.
local agent_key, tenant_agents_key, heartbeats_key, wrap_up_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local agent_id, version, now, status = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local wrap_up_until, removed = tonumber(ARGV[5]), ARGV[6]

local current = tonumber(redis.call('HGET', agent_key, 'presence_version') or '0') or 0
if current >= version then return 0 end
local fields = {}
for i = 7, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', agent_key, unpack(fields))
if removed == '1' then
  redis.call('HSET', agent_key, 'removed', '1', 'groups', '', 'status', 'offline')
  redis.call('SREM', tenant_agents_key, agent_id)
  redis.call('ZREM', heartbeats_key, agent_id)
  return 1
end
redis.call('HDEL', agent_key, 'removed')
redis.call('SADD', tenant_agents_key, agent_id)
for i = 5, #KEYS do redis.call('SADD', KEYS[i], agent_id) end
if status ~= 'offline' then
  -- a fresh grace period: a desk still connected heartbeats on, one that is gone times out as usual
  redis.call('ZADD', heartbeats_key, now, agent_id)
end
if status == 'wrap_up' and wrap_up_until and wrap_up_until > 0 then
  redis.call('ZADD', wrap_up_key, wrap_up_until, agent_id)
end
return 1
