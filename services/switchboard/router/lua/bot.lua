-- The bot's part of the router's scripts (bot-first answers, docs/routing.md "Bot-first answers"): a new
-- conversation the bot answers is held, not queued, until the answer or its deadline; routed after all, it keeps
-- its original arrival time and its thread (the first message, the bot's answer, what came since).

-- Hold a new conversation for the bot (contract.BotHold in the request's `bot`): its first message starts its
-- thread, its classification is kept for routing it after all, the sweep routes it once the deadline passed.
local function bot_hold(conv, M, message)
  local b = M.bot
  redis.call('HSET', K('conv', conv), 'state', 'bot', 'group', b.group, 'channel', M.ch, 'priority', b.prio,
    'enqueued_ms', NOW, 'customer_id', M.cust, 'rule', b.rule, 'by', b.by or '', 'conf', b.conf or 0,
    'declined', '', 'queues', '', 'owner', '',
    'offer_agent', '', 'bot_intent', b.intent, 'bot_token', M.mid, 'bot_deadline_ms', b.deadline,
    'bot_answered_ms', 0, 'lang', M.lang or '')
  redis.call('DEL', K('backlog', conv))
  keep_message(conv, message)
  redis.call('ZADD', T('bot_holds'), b.deadline, conv)
  emit({ type = 'bot_held', conv = conv, group = b.group, channel = M.ch, rule = b.intent })
end

-- A conversation the bot held or answered is routed after all (`since`: its original arrival, 0 for a new
-- conversation): it keeps that arrival and its thread. True when it continues such a conversation.
local function bot_continues(conv, since)
  if not since or since <= 0 then return false end
  redis.call('HSET', K('conv', conv), 'enqueued_ms', since)
  redis.call('ZREM', T('bot_holds'), conv)
  return true
end

-- The conversation is still held for the bot under this token (the message that opened it).
local function bot_still_holds(conv, token)
  local st = redis.call('HMGET', K('conv', conv), 'state', 'bot_token')
  return st[1] == 'bot' and st[2] == token
end
