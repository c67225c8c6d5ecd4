-- One inbound customer message. ARGV[2]: JSON meta; ARGV[3]: the InboundMessage bytes.
-- A redelivered message returns the decisions stored with its processed marker and changes nothing.
local M = cjson.decode(ARGV[2])
local marker = K('processed', M.mid)
local done = redis.call('GET', marker)
if done then return done end
local conv = M.conv
local ckey = K('conv', conv)
local st = redis.call('HMGET', ckey, 'state', 'owner', 'epoch', 'group', 'offer_agent')
if st[1] == 'assigned' and st[2] and st[2] ~= '' then
  local etype, rtype = 3, 10
  if M.live then etype = 4 end
  desk(st[2], etype, conv, st[3], st[4], ARGV[3], 0, rtype, '')
  if not M.live then keep_message(conv, ARGV[3]) end
  emit({ type = 'delivered', conv = conv, agent = st[2], epoch = tonumber(st[3]), group = st[4], live = M.live })
elseif M.live then
  -- A live partial transcript of a call nobody owns yet is dropped: the final segment follows.
  emit({ type = 'dropped_live', conv = conv })
elseif st[1] == 'queued' or st[1] == 'offered' then
  keep_message(conv, ARGV[3])
  emit({ type = 'held', conv = conv, state = st[1], group = st[4], agent = st[5] or '' })
else
  if not M.group then return cjson.encode({ { type = 'need_plan', conv = conv } }) end
  redis.call('HSET', ckey, 'state', 'new', 'group', M.group, 'channel', M.ch, 'priority', M.prio,
    'enqueued_ms', NOW, 'customer_id', M.cust, 'rule', M.rule, 'declined', '', 'queues', '')
  redis.call('DEL', K('backlog', conv))
  keep_message(conv, ARGV[3])
  route(conv, M.cands, M.groups, M.verdicts, M.ver)
end
for _, d in ipairs(E) do d.mid = M.mid end
local out = cjson.encode(E)
redis.call('SET', marker, out, 'EX', M.ttl)
return out
