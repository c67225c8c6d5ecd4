-- Library for scripts that change an agent's presence (presence's own, and other services' that must change an
-- agent's status inside their own atomic step, e.g. the router's missed-offer `away`). The caller declares the
-- agent hash and the tenant's presence pending set in its own KEYS.
--
-- mark_pending(agent_key, pending_key, agent_id, now): bump presence_version and mark the agent pending until its
-- AgentPresence record is acked; returns the new presence_version.
-- presence_set_status(agent_key, pending_key, agent_id, status, now, changed_by, reason): set status (never HSET
-- `status` by hand) and mark pending; after the script call PresenceStore.publish(tenant, [agent]).
-- written(agent_key): presence has written the agent: its hash has a `status`. An agent hash holding only the
-- router's fields (`used:*`, written back by the router's rebuild after Redis lost its data, before presence
-- restored the agent) is not: nobody logs it in or changes it until presence has restored it.
-- known(agent_key): written and not removed. (state/agent_model.py `presence_wrote` and `presence_knows` are the
-- same rules in Python.)

local function written(agent_key)
  return redis.call('HEXISTS', agent_key, 'status') == 1
end

local function known(agent_key)
  return written(agent_key) and redis.call('HGET', agent_key, 'removed') ~= '1'
end

local function mark_pending(agent_key, pending_key, agent_id, now)
  local v = redis.call('HINCRBY', agent_key, 'presence_version', 1)
  redis.call('HSET', agent_key, 'changed_ms', now)
  redis.call('ZADD', pending_key, now, agent_id)
  return v
end

local function presence_set_status(agent_key, pending_key, agent_id, status, now, changed_by, reason)
  redis.call('HSET', agent_key, 'status', status, 'status_since_ms', now, 'status_changed_by', changed_by,
    'status_reason', reason)
  return mark_pending(agent_key, pending_key, agent_id, now)
end
