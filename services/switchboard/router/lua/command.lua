-- One agent command (accept, decline, close, transfer). ARGV[2]: JSON command. The command must carry the
-- conversation's current epoch and come from the agent's current desktop session, or it is refused: a stale
-- replica or desktop cannot undo a newer decision.
local M = cjson.decode(ARGV[2])
local marker = K('processed', M.cid)
local done = redis.call('GET', marker)
if done then return done end
local conv, agent = M.conv, M.agent
local ckey = K('conv', conv)
local st = redis.call('HMGET', ckey, 'state', 'owner', 'epoch', 'offer_agent', 'channel', 'group')
local state, owner, epoch, offer_agent, ch, group = st[1], st[2], tonumber(st[3]) or 0, st[4], st[5], st[6]
local session = tonumber(redis.call('HGET', K('agent', agent), 'session_epoch')) or 0

local function refuse(why)
  emit({ type = 'refused', conv = conv, agent = agent, epoch = epoch, reason = why, command = M.type })
end

if M.session > 0 and M.session < session then
  refuse('stale_session')
elseif M.epoch ~= epoch then
  refuse('stale_epoch')
elseif M.type == 'accept' or M.type == 'decline' then
  if state ~= 'offered' or offer_agent ~= agent then
    refuse('not_offered_to_agent')
  elseif M.type == 'accept' then
    redis.call('HSET', ckey, 'state', 'assigned', 'owner', agent, 'offer_agent', '', 'offer_deadline_ms', 0,
      'declined', '')
    redis.call('ZREM', C.k.offers, conv)
    redis.call('HSET', K('agent', agent), 'missed_offers', 0)
    deliver_backlog(agent, conv, epoch, redis.call('HGET', ckey, 'served_group'), redis.call('HGET', ckey, 'rule'))
    emit({ type = 'accepted', conv = conv, agent = agent, epoch = epoch, group = group, channel = ch })
  else
    release(agent, conv, ch)
    redis.call('ZREM', C.k.offers, conv)
    exclude(ckey, agent, policy(group).back)
    local e = redis.call('HINCRBY', ckey, 'epoch', 1)
    redis.call('HSET', ckey, 'offer_agent', '', 'state', 'new', 'queues', '')
    desk(agent, 7, conv, e, group, nil, 0, 5, 'declined:' .. (M.reason or ''))
    emit({ type = 'declined', conv = conv, agent = agent, epoch = e, group = group, reason = M.reason })
    route(conv, M.cands, M.groups, {})
    drain(agent)
  end
elseif state ~= 'assigned' or owner ~= agent then
  refuse('not_owner')
elseif M.type == 'close' then
  release(agent, conv, ch)
  local e = redis.call('HINCRBY', ckey, 'epoch', 1)
  redis.call('HSET', ckey, 'state', 'closed', 'owner', '', 'last_owner', agent, 'wrap_up', M.wrap or '')
  redis.call('DEL', K('backlog', conv))
  desk(agent, 5, conv, epoch, group, nil, 0, 9, 'wrap_up:' .. (M.wrap or ''), nil, f_str(17, M.wrap or ''))
  emit({ type = 'closed', conv = conv, agent = agent, epoch = e, group = group, wrap = M.wrap, channel = ch })
  drain(agent)
elseif M.type == 'transfer' and M.to_agent ~= '' then
  local why = nil
  if M.to_agent == agent then why = 'same_agent' else why = refusal(M.to_agent, ch, nil) end
  if why then
    refuse('target_' .. why)
  else
    release(agent, conv, ch)
    local e = redis.call('HINCRBY', ckey, 'epoch', 1)
    redis.call('HINCRBY', K('agent', M.to_agent), 'used:' .. ch, 1)
    redis.call('HSET', K('agent', M.to_agent), 'last_assigned_ms', NOW)
    redis.call('SADD', K('agent_convs', M.to_agent), conv)
    redis.call('HSET', ckey, 'owner', M.to_agent, 'last_owner', agent)
    desk(agent, 6, conv, epoch, group, nil, 0, 8, 'to_agent:' .. M.to_agent)
    deliver_backlog(M.to_agent, conv, e, group, 'from_agent:' .. agent, 8)
    emit({ type = 'transferred', conv = conv, agent = M.to_agent, prev = agent, epoch = e, group = group,
      to_agent = M.to_agent, channel = ch })
    drain(agent)
  end
elseif M.type == 'transfer' and M.to_group ~= '' then
  release(agent, conv, ch)
  local e = redis.call('HINCRBY', ckey, 'epoch', 1)
  redis.call('HSET', ckey, 'owner', '', 'last_owner', agent, 'group', M.to_group, 'state', 'new', 'declined', '',
    'queues', '')
  exclude(ckey, agent, policy(M.to_group).back)
  desk(agent, 6, conv, epoch, group, nil, 0, 8, 'to_group:' .. M.to_group)
  emit({ type = 'transferred', conv = conv, prev = agent, agent = '', epoch = e, group = M.to_group,
    to_group = M.to_group, channel = ch })
  route(conv, M.cands, M.groups, {})
  drain(agent)
else
  refuse('unknown_command')
end
for _, d in ipairs(E) do d.cid = M.cid end
local out = cjson.encode(E)
redis.call('SET', marker, out, 'EX', M.ttl)
return out
