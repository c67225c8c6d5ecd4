-- Take an (already offline) agent out of every set; the hash stays, marked removed (the router's load fields).
-- Needs the presence_status library.
-- KEYS[7], KEYS[8], ...: the set of each group named in group_names, in that order (the groups the caller read
-- from the hash); if the hash names another group (its groups changed meanwhile), nothing is written.
-- The agent joins the tenant's removed set: the router's sweep hands back whatever it still holds.
-- Returns {code, presence_version}: 1 removed, -2 unknown agent, -4 groups changed meanwhile (retry).
local agent_key, tenant_agents_key, pending_key = KEYS[1], KEYS[2], KEYS[5]
local heartbeats_key, wrap_up_key, removed_key = KEYS[3], KEYS[4], KEYS[6]
local agent_id, now, group_names = ARGV[1], ARGV[2], ARGV[3]

if not written(agent_key) then return {-2, 0} end
local group_sets, n = {}, 7
for g in string.gmatch(group_names, '[^,]+') do group_sets[g] = KEYS[n] n = n + 1 end
local old = redis.call('HGET', agent_key, 'groups') or ''
for g in string.gmatch(old, '[^,]+') do
  if not group_sets[g] then return {-4, 0} end
end
for g in string.gmatch(old, '[^,]+') do redis.call('SREM', group_sets[g], agent_id) end
redis.call('SREM', tenant_agents_key, agent_id)
redis.call('ZREM', heartbeats_key, agent_id)
redis.call('ZREM', wrap_up_key, agent_id)
redis.call('HSET', agent_key, 'removed', '1', 'groups', '', 'status', 'offline')
redis.call('SADD', removed_key, agent_id)
return {1, mark_pending(agent_key, pending_key, agent_id, now)}
