-- The bot answered a conversation it holds (contract.BotAnswerRequest): it waits for the customer now, with the
-- answer in its thread (a later owner's desk shows it), and ANSWERED_BY_BOT goes to the routing topic.
-- KEYS: the conversation's hash and backlog, the tenant's bot holds and unsent decisions (router/bot.py).
-- ARGV[1]: context; ARGV[2]: request JSON; ARGV[3]: the answer as the thread keeps it (InboundMessage bytes with
--   attributes sender=bot). A conversation no longer held under the token (routed meanwhile) is left alone.
local context, request, answer = ARGV[1], ARGV[2], ARGV[3]
begin(context, KEYS)
local R = cjson.decode(request)
if not bot_still_holds(R.conv, R.token) then
  return cjson.encode({ { type = 'bot_moved_on', conv = R.conv } })
end
local ckey = K('conv', R.conv)
local c = redis.call('HMGET', ckey, 'group', 'channel', 'enqueued_ms', 'priority', 'bot_intent')
redis.call('HSET', ckey, 'state', 'bot_answered', 'bot_answered_ms', NOW)
redis.call('ZREM', T('bot_holds'), R.conv)
keep_message(R.conv, answer)
emit({ type = 'answered_by_bot', conv = R.conv, group = c[1], channel = c[2], enq = tonumber(c[3]) or NOW,
  prio = tonumber(c[4]) or 0, rule = c[5] or '', tpl = R.tpl, lookup = R.lookup, mid = R.token })
return unsent()
