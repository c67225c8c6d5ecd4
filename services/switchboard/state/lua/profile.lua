-- Change what an agent can do (groups, languages, capacity, name, multiplier, temporary), creating it offline
-- (epoch 0, multiplier 1) when missing. Needs the presence_status library.
-- KEYS[4], KEYS[5], ...: the set of each group named in group_names, in that order: the groups the caller read
-- from the hash plus the new ones. If the hash names a group the caller did not (its groups changed meanwhile),
-- nothing is written and the caller reads again.
-- `groups` is what the agent serves (its own groups, plus a surge profile's pools while one is on); its own groups
-- are the `own_groups` field (a field pair). A regroup after a profile switch computes `groups` from the own groups it
-- read: `expect_own` is what it read, and another value in the hash (an operator changed them meanwhile) is a retry.
-- Returns {code, presence_version}: 1 changed, 0 unchanged, -4 groups changed meanwhile (retry).
local agent_key, tenant_agents_key, pending_key = KEYS[1], KEYS[2], KEYS[3]
local agent_id, now = ARGV[1], ARGV[2]
local groups = ARGV[3]            -- comma-separated; '\0' keeps the groups as they are
local group_names = ARGV[4]       -- comma-separated names of KEYS[4..]
local expect_own = ARGV[5]        -- the own_groups the caller read ('\0': not checked)
-- ARGV[6], ARGV[7], ...: field, value pairs

local group_sets, n = {}, 4
for g in string.gmatch(group_names, '[^,]+') do group_sets[g] = KEYS[n] n = n + 1 end
local old = redis.call('HGET', agent_key, 'groups') or ''
if groups ~= '\0' then
  for g in string.gmatch(old, '[^,]+') do
    if not group_sets[g] then return {-4, 0} end
  end
end
if expect_own ~= '\0' and (redis.call('HGET', agent_key, 'own_groups') or '') ~= expect_own then return {-4, 0} end
local changed = false
if not written(agent_key) then
  redis.call('HSET', agent_key, 'status', 'offline', 'session_epoch', 0, 'multiplier', 1, 'status_since_ms', now,
    'groups', '', 'presence_version', 0)
  changed = true
end
if redis.call('HGET', agent_key, 'removed') == '1' then redis.call('HDEL', agent_key, 'removed') changed = true end
if groups ~= '\0' then
  if old ~= groups then
    for g in string.gmatch(old, '[^,]+') do redis.call('SREM', group_sets[g], agent_id) end
    redis.call('HSET', agent_key, 'groups', groups)
    changed = true
  end
  for g in string.gmatch(groups, '[^,]+') do redis.call('SADD', group_sets[g], agent_id) end
end
for i = 6, #ARGV, 2 do
  if redis.call('HGET', agent_key, ARGV[i]) ~= ARGV[i + 1] then
    redis.call('HSET', agent_key, ARGV[i], ARGV[i + 1])
    changed = true
  end
end
redis.call('SADD', tenant_agents_key, agent_id)
if changed then return {1, mark_pending(agent_key, pending_key, agent_id, now)} end
return {0, (tonumber(redis.call('HGET', agent_key, 'presence_version')) or 0)}
