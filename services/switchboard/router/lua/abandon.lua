-- The customer left (contract.AbandonRequest): a caller hung up (call.ended) or a chat customer's widget stayed
-- closed past the tenant's patience. A queued conversation leaves its queues; an offered one also gives back the
-- offered agent's slot (an offer holds one) and the agent's desk gets the offer revoked. Nothing else is freed:
-- an assigned conversation is the agent's to close, and a closed, abandoned or unknown one is never reopened.
-- Applied only if the conversation is as the router read it (and, for the sweep, the customer is still gone).
-- KEYS: the processed marker (call.ended), the conversation's hash and backlog, the queues of the tenant's groups
--   of its channel, the offered agent's hash, conversations, outbox and seq, that agent's groups' capacity
--   versions, offers, notify, unsent, chat gone set.
-- ARGV[1]: context; ARGV[2]: request JSON.
local context, request = ARGV[1], ARGV[2]
begin(context, KEYS)
local M = cjson.decode(request)
BUMP = M.bump
local conv = M.conv
local marker = nil
if M.mid ~= '' then
  marker = K('processed', M.mid)
  local done = redis.call('GET', marker)
  if done then return done end
end

local ckey = K('conv', conv)
if not conv_unchanged(conv, M.expect) then
  return cjson.encode({ { type = 'changed', conv = conv } })
end
local st = redis.call('HMGET', ckey, 'state', 'offer_agent', 'channel', 'group', 'enqueued_ms', 'epoch', 'priority')
local still_gone = true
if M.gone_before > 0 then
  local since = redis.call('ZSCORE', T('gone'), conv)
  still_gone = since ~= false and tonumber(since) <= M.gone_before
end
if (st[1] == 'queued' or st[1] == 'offered') and still_gone then
  abandon_conversation(conv, st, M.reason)
else
  emit({ type = 'not_abandoned', conv = conv, state = st[1] or '', reason = M.reason })
end
if M.gone_before > 0 and still_gone then redis.call('ZREM', T('gone'), conv) end
if marker then return marked(marker, 'mid', M.mid) end
return unsent()
