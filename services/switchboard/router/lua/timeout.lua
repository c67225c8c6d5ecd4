-- An offer's push timeout passed (contract.TimeoutRequest): take the capacity back, count the miss, set the
-- agent away when the router decided this miss is one too many, and route the conversation on with the plan.
-- Applied only if the offer, the agent's count of misses and its presence version are as the router read them.
-- KEYS: the conversation's hash and backlog, the offered agent's hash, conversations, outbox and seq, the route
--   plan's keys, offers, presence pending, notify, unsent.
-- ARGV[1]: context; ARGV[2]: request JSON.
local context, request = ARGV[1], ARGV[2]
begin(context, KEYS)
local M = cjson.decode(request)
BUMP = M.bump
local conv, agent = M.conv, M.expect.offer_agent
local ckey = K('conv', conv)
local akey = K('agent', agent)
local a = redis.call('HMGET', akey, 'missed_offers', 'presence_version')
if not conv_unchanged(conv, M.expect) or (tonumber(a[1]) or 0) ~= M.missed or (a[2] or '') ~= M.version then
  return unsent()
end
local c = redis.call('HMGET', ckey, 'channel', 'group')
local ch, group = c[1], c[2]
release(agent, conv, ch)
redis.call('ZREM', T('offers'), conv)
local e = redis.call('HINCRBY', ckey, 'epoch', 1)
redis.call('HSET', ckey, 'offer_agent', '', 'state', 'new', 'queues', '', 'declined', M.declined)
desk(agent, { type = 'revoked', conv = conv, epoch = e, group = group, routing = 'timed_out',
  rule = 'offer_timed_out' })
if M.away then
  -- Status belongs to presence: change it through presence's own function so the version and pending mark
  -- move with it, and presence's record of the agent stays whole.
  local why = 'missed ' .. (M.missed + 1) .. ' offers'
  presence_set_status(akey, T('pending'), agent, 'away', NOW, 'router', why)
  redis.call('HSET', akey, 'missed_offers', 0)
  desk(agent, { type = 'status', status = 'away', rule = 'missed_offers', changed_by = 'router', reason = why })
else
  redis.call('HSET', akey, 'missed_offers', M.missed + 1)
end
emit({ type = 'timed_out', conv = conv, agent = agent, epoch = e, group = group, missed = M.missed + 1,
  away = M.away })
route(conv, M.route)
return unsent()
