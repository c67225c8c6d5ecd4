-- One conversation rebuilt after Redis lost the router's state (router/rebuild.py; docs/state.md "When Redis loses
-- its data"): its hash as the routing topic left it, its backlog from the inbound topic, processed markers of
-- those messages, its place in its group's queue (queued) or its owner's slot and desk events (assigned).
-- An owned conversation is assigned to its owner again under a new epoch (ASSIGNED with the backlog, an ASSIGNED
-- routing event kept in the unsent set): the owner's desk may have lost nothing, and under one epoch it gets
-- every message once (docs/invariants.md, invariant 1). Idempotent: a conversation whose hash Redis kept, in the
-- state, owner and epoch the topic says, or at a later epoch, is left as it is (the router publishes its unsent
-- decisions before it reads the topic, so after a partial loss the topic is not behind what Redis kept).
-- KEYS: the conversation's hash and backlog, the processed markers of its messages, its group's queue (queued),
--   the owner's hash, conversations, outbox and seq (assigned), what the hash held before (the old holder's keys,
--   its old queues), offers, notify.
-- ARGV[1]: context (without the state mark: this script writes the state the mark stands for);
-- ARGV[2]: request JSON (rebuild.Folded.request); ARGV[3..]: the backlog's InboundMessage bytes, oldest first.
local context, request = ARGV[1], ARGV[2]
begin(context, KEYS)
local R = cjson.decode(request)
local conv = R.conv
local ckey = K('conv', conv)
-- What the hash held before (a rebuild over state that was not lost, e.g. the first start of a router that checks
-- marks on a Redis that kept its data, or a rebuild run again): the old holder's slot, offer and queue places go.
local was = redis.call('HMGET', ckey, 'state', 'owner', 'offer_agent', 'channel', 'queues', 'epoch')
-- Kept as the topic says, or at a later epoch than the topic has (a claim whose event had not reached the topic):
-- Redis is not behind, the conversation stays as it is.
local kept_epoch = tonumber(was[6]) or 0
if was[1] and (kept_epoch > R.epoch or (was[1] == R.state and (was[2] or '') == (R.owner or '') and
    kept_epoch >= R.epoch)) then
  return 0
end
local holder = (was[1] == 'assigned' and was[2]) or (was[1] == 'offered' and was[3]) or ''
if holder ~= '' then release(holder, conv, was[4]) end
redis.call('ZREM', T('offers'), conv)
if was[5] and was[5] ~= '' then
  for g in string.gmatch(was[5], '[^,]+') do redis.call('ZREM', qkey(g, was[4]), conv) end
end
redis.call('DEL', K('backlog', conv))
for i = 3, #ARGV do keep_message(conv, ARGV[i]) end
for _, mid in ipairs(R.mids) do redis.call('SET', K('processed', mid), '[]', 'EX', C.ttl, 'NX') end
redis.call('HSET', ckey, 'state', R.state, 'owner', R.owner, 'offer_agent', '', 'offer_deadline_ms', 0,
  'epoch', R.epoch, 'channel', R.channel, 'group', R.group, 'priority', R.prio, 'enqueued_ms', R.enq,
  'rule', R.rule, 'by', R.by, 'conf', R.conf, 'lang', R.lang, 'customer_id', R.customer, 'queues', '',
  'served_group', R.served, 'last_owner', R.last_owner)
if R.state == 'queued' then
  redis.call('ZADD', qkey(R.group, R.channel), R.score, conv)
  redis.call('HSET', ckey, 'queues', R.group)
elseif R.state == 'assigned' then
  if redis.call('SADD', K('agent_convs', R.owner), conv) == 1 then
    redis.call('HINCRBY', K('agent', R.owner), 'used:' .. R.channel, 1)
  end
  local epoch = math.max(R.epoch, tonumber(was[6]) or 0) + 1
  redis.call('HSET', ckey, 'epoch', epoch)
  deliver_backlog(R.owner, conv, epoch, R.served, R.rule)
  emit({ type = 'assigned', conv = conv, agent = R.owner, group = R.served, epoch = epoch, channel = R.channel,
    enq = R.enq, prio = R.prio, rule = R.rule, home = R.group, lang = R.lang, reason = 'rebuilt' })
  unsent()
elseif R.state == 'abandoned' then
  redis.call('EXPIRE', K('backlog', conv), KEEP_BACKLOG_S)
end
return #ARGV - 2
