"""Redis scripts of presence: every change of an agent's presence is one atomic script.

Each script that changes what an AgentPresence record would say bumps `presence_version` and puts the agent in
the tenant's pending set; the store publishes the record after the script and takes the agent out of the pending
set only if the version it published is still the current one. A crash between the script and the publish is
repaired by the sweep, which republishes agents pending for too long.

Numbers read from the hash go through `tonumber(...) or 0`: a field edited by hand into garbage must not make a
script fail (and with it every sweep of the tenant).

All keys of one call belong to one tenant (hash tag `{tenant}`), so the scripts stay cluster-safe. Group set keys
are built inside the profile script from a prefix/suffix pair that `Keys.group_agents` produced, because which
groups an agent leaves is only known inside the script.
"""

from __future__ import annotations

from switchboard.state.outbox import DESK_APPEND_LUA

# Result codes shared by the scripts.
CHANGED = 1
UNCHANGED = 0
STALE_SESSION = -1
UNKNOWN_AGENT = -2
NEEDS_LOGIN = -3

_MARK_PENDING = """
local function mark_pending(agent_key, pending_key, agent_id, now)
  local v = redis.call('HINCRBY', agent_key, 'presence_version', 1)
  redis.call('HSET', agent_key, 'changed_ms', now)
  redis.call('ZADD', pending_key, now, agent_id)
  return v
end
"""

# For scripts of other services that must change an agent's status in their own atomic step (the router sets an
# agent `away` after missed offers inside its offer-timeout script): include this, call it instead of HSET
# `status`, then call `PresenceStore.publish(tenant, [agent])` after the script. If that publish never happens the
# presence sweep republishes the agent's whole state within SB_REPUBLISH_AFTER_S. Do not publish a hand-built,
# partial AgentPresence: on the compacted topic it would replace the agent's whole state.
PRESENCE_STATUS_LUA = (
    _MARK_PENDING
    + """
local function presence_set_status(agent_key, pending_key, agent_id, status, now, changed_by, reason)
  redis.call('HSET', agent_key, 'status', status, 'status_since_ms', now, 'status_changed_by', changed_by,
    'status_reason', reason)
  return mark_pending(agent_key, pending_key, agent_id, now)
end
"""
)

# KEYS: agent, heartbeats, wrap_up timers, pending, desk outbox, desk seq, desk notify
# ARGV: agent_id, new_status, now_ms, expect_epoch ('' = any), condition ('' | stale_before | wrap_up_due),
#       cutoff_ms, wrap_up_until_ms, changed_by, reason, desk event bytes
# Returns {code, session_epoch, presence_version, desk_seq}
TRANSITION = (
    DESK_APPEND_LUA
    + PRESENCE_STATUS_LUA
    + """
local agent, hb, wrap, pending = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local id, new, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
if redis.call('EXISTS', agent) == 0 or redis.call('HGET', agent, 'removed') == '1' then return {-2, 0, 0, 0} end
local cur = redis.call('HGET', agent, 'status') or 'offline'
local epoch = (tonumber(redis.call('HGET', agent, 'session_epoch')) or 0)
if ARGV[4] ~= '' and tonumber(ARGV[4]) ~= epoch then return {-1, epoch, 0, 0} end
local cond = ARGV[5]
if cond == 'stale_before' then
  -- the sweep: only an agent still silent since before the cutoff goes offline (another replica may have won)
  if cur == 'offline' then redis.call('ZREM', hb, id) return {0, epoch, 0, 0} end
  local last = (tonumber(redis.call('HGET', agent, 'last_heartbeat_ms')) or 0)
  if last >= tonumber(ARGV[6]) then return {0, epoch, 0, 0} end
elseif cond == 'wrap_up_due' then
  if cur ~= 'wrap_up' then redis.call('ZREM', wrap, id) return {0, epoch, 0, 0} end
  local due = (tonumber(redis.call('HGET', agent, 'wrap_up_until_ms')) or 0)
  if due > now then return {0, epoch, 0, 0} end
end
-- only a login (its own script) brings an offline agent back
if cur == 'offline' then return {-3, epoch, 0, 0} end
-- wrap_up -> wrap_up restarts the timer; any other same-status change is no change
if cur == new and new ~= 'wrap_up' then return {0, epoch, 0, 0} end
local v = presence_set_status(agent, pending, id, new, now, ARGV[8], ARGV[9])
if new == 'wrap_up' then
  redis.call('HSET', agent, 'wrap_up_until_ms', ARGV[7])
  redis.call('ZADD', wrap, ARGV[7], id)
else
  redis.call('HDEL', agent, 'wrap_up_until_ms')
  redis.call('ZREM', wrap, id)
end
if new == 'offline' then redis.call('ZREM', hb, id) end
local seq = desk_append(KEYS[5], KEYS[6], KEYS[7], id, ARGV[10])
return {1, epoch, v, seq}
"""
)

# KEYS: agent, heartbeats, pending, desk outbox, desk seq, desk notify
# ARGV: agent_id, now_ms, initial_status, gateway_instance, desk event bytes (used if the agent was offline),
#       changed_by
# Returns {code, new session_epoch, presence_version, status_changed (1/0)}
LOGIN = (
    DESK_APPEND_LUA
    + _MARK_PENDING
    + """
local agent, hb, pending = KEYS[1], KEYS[2], KEYS[3]
local id, now = ARGV[1], ARGV[2]
if redis.call('EXISTS', agent) == 0 or redis.call('HGET', agent, 'removed') == '1' then return {-2, 0, 0, 0} end
-- the new session fences every older one: their heartbeats, status changes and logouts carry a lower epoch
local epoch = redis.call('HINCRBY', agent, 'session_epoch', 1)
redis.call('HSET', agent, 'last_heartbeat_ms', now, 'gateway_instance', ARGV[4])
redis.call('ZADD', hb, now, id)
local cur = redis.call('HGET', agent, 'status') or 'offline'
local changed = 0
if cur == 'offline' then
  redis.call('HSET', agent, 'status', ARGV[3], 'status_since_ms', now, 'status_changed_by', ARGV[6],
    'status_reason', 'login')
  desk_append(KEYS[4], KEYS[5], KEYS[6], id, ARGV[5])
  changed = 1
end
local v = mark_pending(agent, pending, id, now)
return {1, epoch, v, changed}
"""
)

# KEYS: agent, heartbeats. ARGV: agent_id, session_epoch, now_ms.
# Returns 1 (recorded), -1 (stale session), -3 (offline: the desktop must log in again)
HEARTBEAT = """
local agent, hb = KEYS[1], KEYS[2]
local epoch = (tonumber(redis.call('HGET', agent, 'session_epoch')) or 0)
if epoch ~= tonumber(ARGV[2]) then return -1 end
local cur = redis.call('HGET', agent, 'status')
if not cur or cur == 'offline' then return -3 end
redis.call('HSET', agent, 'last_heartbeat_ms', ARGV[3])
redis.call('ZADD', hb, ARGV[3], ARGV[1])
return 1
"""

# KEYS: agent, tenant agents, pending
# ARGV: agent_id, now_ms, group key prefix, group key suffix, groups csv ('\0' = keep), then field, value pairs
# Creates the agent (offline, epoch 0, multiplier 1) when missing. Returns {code, presence_version}.
PROFILE = (
    _MARK_PENDING
    + """
local agent, tenant_agents, pending = KEYS[1], KEYS[2], KEYS[3]
local id, now, pre, post, groups = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local changed = false
if redis.call('EXISTS', agent) == 0 then
  redis.call('HSET', agent, 'status', 'offline', 'session_epoch', 0, 'multiplier', 1, 'status_since_ms', now,
    'groups', '', 'presence_version', 0)
  changed = true
end
if redis.call('HGET', agent, 'removed') == '1' then redis.call('HDEL', agent, 'removed') changed = true end
if groups ~= '\\0' then
  local old = redis.call('HGET', agent, 'groups') or ''
  if old ~= groups then
    for g in string.gmatch(old, '[^,]+') do redis.call('SREM', pre .. g .. post, id) end
    redis.call('HSET', agent, 'groups', groups)
    changed = true
  end
  for g in string.gmatch(groups, '[^,]+') do redis.call('SADD', pre .. g .. post, id) end
end
for i = 6, #ARGV, 2 do
  if redis.call('HGET', agent, ARGV[i]) ~= ARGV[i + 1] then
    redis.call('HSET', agent, ARGV[i], ARGV[i + 1])
    changed = true
  end
end
redis.call('SADD', tenant_agents, id)
if changed then return {1, mark_pending(agent, pending, id, now)} end
return {0, (tonumber(redis.call('HGET', agent, 'presence_version')) or 0)}
"""
)

# KEYS: agent, tenant agents, heartbeats, wrap_up timers, pending
# ARGV: agent_id, now_ms, group key prefix, group key suffix
# Takes an (already offline) agent out of every set; the hash stays (the router's load fields) marked removed.
REMOVE = (
    _MARK_PENDING
    + """
local agent = KEYS[1]
local id = ARGV[1]
if redis.call('EXISTS', agent) == 0 then return {-2, 0} end
local old = redis.call('HGET', agent, 'groups') or ''
for g in string.gmatch(old, '[^,]+') do redis.call('SREM', ARGV[3] .. g .. ARGV[4], id) end
redis.call('SREM', KEYS[2], id)
redis.call('ZREM', KEYS[3], id)
redis.call('ZREM', KEYS[4], id)
redis.call('HSET', agent, 'removed', '1', 'groups', '', 'status', 'offline')
return {1, mark_pending(agent, KEYS[5], id, ARGV[2])}
"""
)

# KEYS: pending. ARGV: now_ms, cutoff_ms, limit.
# Claims agents pending since before the cutoff (re-scoring them to now, so another replica skips them).
CLAIM_PENDING = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], ARGV[1], id) end
return ids
"""

# KEYS: agent, pending. ARGV: agent_id, published presence_version.
# Clears the pending mark unless a newer change came in meanwhile (that change publishes itself).
CLEAR_PENDING = """
local v = (tonumber(redis.call('HGET', KEYS[1], 'presence_version')) or 0)
if v <= tonumber(ARGV[2]) then redis.call('ZREM', KEYS[2], ARGV[1]) return 1 end
return 0
"""

# KEYS: surge schedules. ARGV: schedule id, expected state, new state json.
# Moves a schedule from one state to the next exactly once across replicas.
CLAIM_SCHEDULE = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
local doc = cjson.decode(raw)
if doc['state'] ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
"""
