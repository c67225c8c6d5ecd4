-- An offer's push timeout passed: take the capacity back, count the miss (N misses set the agent away), and
-- route the conversation to the next candidate. ARGV[2]: JSON {conv, cands, groups, max_misses}.
local M = cjson.decode(ARGV[2])
local conv = M.conv
local ckey = K('conv', conv)
local st = redis.call('HMGET', ckey, 'state', 'offer_agent', 'offer_deadline_ms', 'channel', 'group')
if st[1] ~= 'offered' or (tonumber(st[3]) or 0) > NOW then
  redis.call('ZREM', C.k.offers, conv)
  return unsent()
end
local agent, ch, group = st[2], st[4], st[5]
release(agent, conv, ch)
redis.call('ZREM', C.k.offers, conv)
exclude(ckey, agent, policy(group).back)
local e = redis.call('HINCRBY', ckey, 'epoch', 1)
redis.call('HSET', ckey, 'offer_agent', '', 'state', 'new', 'queues', '')
desk(agent, 7, conv, e, group, nil, 0, 6, 'offer_timed_out')
local akey = K('agent', agent)
local missed = redis.call('HINCRBY', akey, 'missed_offers', 1)
local away = false
if missed >= M.max_misses and redis.call('HGET', akey, 'status') == 'available' then
  -- Status belongs to presence: change it through presence's own function so the version and pending mark
  -- move with it, and presence's record of the agent stays whole.
  presence_set_status(akey, C.k.pending, agent, 'away', NOW, 'router', 'missed ' .. missed .. ' offers')
  redis.call('HSET', akey, 'missed_offers', 0)
  -- STATUS away (11 = 3), with the attributes presence's own STATUS events carry (13: map entries).
  local why = 'missed ' .. missed .. ' offers'
  desk(agent, 8, '', 0, '', nil, 0, 0, 'missed_offers', f_int(11, 3)
    .. f_str(13, f_str(1, 'changed_by') .. f_str(2, 'router')) .. f_str(13, f_str(1, 'reason') .. f_str(2, why)))
  away = true
end
emit({ type = 'timed_out', conv = conv, agent = agent, epoch = e, group = group, missed = missed, away = away })
route(conv, M.cands, M.groups, {})
drain(agent)
return unsent()
