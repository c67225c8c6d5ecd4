-- An agent left (offline past the grace period): every conversation they own or were offered goes back to its
-- queue with its original enqueue time and priority (or straight to another agent with room).
-- ARGV[2]: JSON {agent, offline_before_ms}.
local M = cjson.decode(ARGV[2])
local agent = M.agent
local a = redis.call('HMGET', K('agent', agent), 'status', 'status_since_ms')
if (a[1] or 'offline') ~= 'offline' or (tonumber(a[2]) or 0) > M.offline_before_ms then
  return unsent()
end
for _, conv in ipairs(redis.call('SMEMBERS', K('agent_convs', agent))) do
  local ckey = K('conv', conv)
  local st = redis.call('HMGET', ckey, 'state', 'owner', 'offer_agent', 'channel', 'group', 'epoch')
  if (st[1] == 'assigned' and st[2] == agent) or (st[1] == 'offered' and st[3] == agent) then
    release(agent, conv, st[4])
    redis.call('ZREM', C.k.offers, conv)
    local e = redis.call('HINCRBY', ckey, 'epoch', 1)
    redis.call('HSET', ckey, 'owner', '', 'offer_agent', '', 'last_owner', agent, 'state', 'new', 'queues', '')
    desk(agent, 7, conv, tonumber(st[6]), st[5], nil, 0, 7, 'agent_left')
    emit({ type = 'requeued', conv = conv, prev = agent, agent = '', epoch = e, group = st[5], channel = st[4] })
    route(conv, {}, { st[5] }, {})
  else
    redis.call('SREM', K('agent_convs', agent), conv)
  end
end
return unsent()
