-- One inbound customer message (contract.InboundRequest); `owner`: the owner the router read (its outbox is declared).
-- KEYS: the processed marker, the conversation's hash and backlog, the bot holds (a conversation the bot holds,
--   answered or takes), and for a conversation to open: its groups'
--   queues and capacity versions, each candidate's hash, conversations, outbox and seq, the customer's
--   returning-agent key, offers, notify (router/scripts.py declares them).
-- ARGV[1]: context; ARGV[2]: request JSON; ARGV[3]: the InboundMessage bytes.
-- A redelivered message returns the decisions stored with its processed marker and changes nothing.
local context, request, message = ARGV[1], ARGV[2], ARGV[3]
begin(context, KEYS)
local M = cjson.decode(request)
local marker = K('processed', M.mid)
local done = redis.call('GET', marker)
if done then return done end
local conv = M.conv
local ckey = K('conv', conv)
local st = redis.call('HMGET', ckey, 'state', 'owner', 'epoch', 'group', 'offer_agent')
if st[1] == 'assigned' and st[2] ~= M.owner then
  -- The owner changed since the router read it (its outbox is not declared): the router reads again.
  return cjson.encode({ { type = 'changed', conv = conv } })
elseif st[1] == 'assigned' and st[2] and st[2] ~= '' then
  if M.live then
    desk(st[2], { type = 'transcript', conv = conv, epoch = st[3], group = st[4], msg = message,
      routing = 'message_delivered' })
  else
    desk(st[2], { type = 'message', conv = conv, epoch = st[3], group = st[4], msg = message,
      routing = 'message_delivered' })
    keep_message(conv, message)
  end
  emit({ type = 'delivered', conv = conv, agent = st[2], epoch = tonumber(st[3]), group = st[4], live = M.live })
elseif M.live then
  -- A live partial transcript of a call nobody owns yet is dropped: the final segment follows.
  emit({ type = 'dropped_live', conv = conv })
elseif st[1] == 'queued' or st[1] == 'offered' then
  keep_message(conv, message)
  emit({ type = 'held', conv = conv, state = st[1], group = st[4], agent = st[5] or '' })
elseif M.bot then
  bot_hold(conv, M, message)
else
  local open = M.open
  if not open then return cjson.encode({ { type = 'need_plan', conv = conv } }) end
  redis.call('HSET', ckey, 'state', 'new', 'group', open.group, 'channel', M.ch, 'priority', open.prio,
    'enqueued_ms', NOW, 'customer_id', M.cust, 'rule', open.rule, 'by', open.by or '', 'conf', open.conf or 0,
    'declined', '', 'queues', '', 'lang', M.lang or '')
  if bot_continues(conv, open.since) then
    returns(conv, st[1])
  else
    redis.call('DEL', K('backlog', conv))
  end
  keep_message(conv, message)
  route(conv, open.route)
end
return marked(marker, 'mid', M.mid)
