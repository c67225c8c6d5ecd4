-- One agent command (contract.CommandRequest): accept, decline, close or transfer, which the router found
-- allowed (routing/commands.py) on the conversation and agent as it read them. Applied only if the conversation
-- and the agent's desktop session are still as read; otherwise refused as `changed`, and the router reads again.
-- KEYS: the processed marker, the conversation's hash and backlog, the acting agent's and a target agent's hash,
--   conversations, outbox and seq, the route plan's keys (decline, transfer to a group), offers, notify.
-- ARGV[1]: context; ARGV[2]: request JSON.
local context, request = ARGV[1], ARGV[2]
begin(context, KEYS)
local M = cjson.decode(request)
BUMP = M.bump
local marker = K('processed', M.cid)
local done = redis.call('GET', marker)
if done then return done end
local conv, agent = M.conv, M.agent
local ckey = K('conv', conv)
local c = redis.call('HMGET', ckey, 'channel', 'group', 'epoch')
local ch, group, epoch = c[1], c[2], tonumber(c[3]) or 0
local session = redis.call('HGET', K('agent', agent), 'session_epoch') or ''

if not conv_unchanged(conv, M.expect) or session ~= M.session then
  -- Nothing was applied and no marker is kept: the router reads the conversation again and re-decides.
  return cjson.encode({ { type = 'refused', conv = conv, agent = agent, epoch = epoch, reason = 'changed',
    command = M.type } })
elseif M.type == 'accept' then
  redis.call('HSET', ckey, 'state', 'assigned', 'owner', agent, 'offer_agent', '', 'offer_deadline_ms', 0,
    'declined', '')
  redis.call('ZREM', T('offers'), conv)
  redis.call('HSET', K('agent', agent), 'missed_offers', 0)
  deliver_backlog(agent, conv, epoch, redis.call('HGET', ckey, 'served_group'), redis.call('HGET', ckey, 'rule'))
  local enq = redis.call('HGET', ckey, 'enqueued_ms')
  local d = emit({ type = 'accepted', conv = conv, agent = agent, epoch = epoch, group = group, channel = ch,
    enq = tonumber(enq) or NOW })
  if first_since_arrival(ckey, 'assign_measured', enq) then d.first = true end
elseif M.type == 'decline' then
  release(agent, conv, ch)
  redis.call('ZREM', T('offers'), conv)
  local e = redis.call('HINCRBY', ckey, 'epoch', 1)
  redis.call('HSET', ckey, 'offer_agent', '', 'state', 'new', 'queues', '', 'declined', M.declined)
  desk(agent, { type = 'revoked', conv = conv, epoch = e, group = group, routing = 'declined',
    rule = 'declined:' .. M.reason })
  emit({ type = 'declined', conv = conv, agent = agent, epoch = e, group = group, reason = M.reason })
  route(conv, M.route)
elseif M.type == 'close' then
  release(agent, conv, ch)
  local e = redis.call('HINCRBY', ckey, 'epoch', 1)
  redis.call('HSET', ckey, 'state', 'closed', 'owner', '', 'last_owner', agent, 'wrap_up', M.wrap)
  redis.call('DEL', K('backlog', conv))
  desk(agent, { type = 'closed', conv = conv, epoch = epoch, group = group, routing = 'closed',
    rule = 'wrap_up:' .. M.wrap, wrap_up = M.wrap })
  emit({ type = 'closed', conv = conv, agent = agent, epoch = e, group = group, wrap = M.wrap, channel = ch })
elseif M.type == 'transfer' and M.to_agent ~= '' then
  if not agent_unchanged(M.to_agent, M.target) then
    return cjson.encode({ { type = 'refused', conv = conv, agent = agent, epoch = epoch, reason = 'changed',
      command = M.type } })
  end
  release(agent, conv, ch)
  local e = redis.call('HINCRBY', ckey, 'epoch', 1)
  redis.call('HINCRBY', K('agent', M.to_agent), 'used:' .. ch, 1)
  redis.call('HSET', K('agent', M.to_agent), 'last_assigned_ms', NOW)
  redis.call('SADD', K('agent_convs', M.to_agent), conv)
  redis.call('HSET', ckey, 'owner', M.to_agent, 'last_owner', agent)
  desk(agent, { type = 'transferred', conv = conv, epoch = epoch, group = group, routing = 'transferred',
    rule = 'to_agent:' .. M.to_agent })
  deliver_backlog(M.to_agent, conv, e, group, 'from_agent:' .. agent, 'transferred')
  emit({ type = 'transferred', conv = conv, agent = M.to_agent, prev = agent, epoch = e, group = group,
    to_agent = M.to_agent, channel = ch })
else
  release(agent, conv, ch)
  local e = redis.call('HINCRBY', ckey, 'epoch', 1)
  redis.call('HSET', ckey, 'owner', '', 'last_owner', agent, 'group', M.to_group, 'state', 'new',
    'declined', M.declined, 'queues', '')
  desk(agent, { type = 'transferred', conv = conv, epoch = epoch, group = group, routing = 'transferred',
    rule = 'to_group:' .. M.to_group })
  emit({ type = 'transferred', conv = conv, prev = agent, agent = '', epoch = e, group = M.to_group,
    to_group = M.to_group, channel = ch })
  route(conv, M.route)
end
return marked(marker, 'cid', M.cid)
