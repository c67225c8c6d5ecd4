-- What planning needs to know of a batch's conversations, in one read-only call.
-- KEYS: per message, its conversation's hash then its customer's returning-agent key (the conversation's hash
--   again when it has no customer id).
-- ARGV: none. Returns JSON (contract.Peek per message): the conversation's state, owner and last owner, and the
--   customer's last agent (熟客优先), '' for each one missing; for a conversation the bot holds or answered, or
--   whose customer left while it waited (abandoned), also its original arrival, group, priority, rule, what
--   classified it (by, conf), its language and when the bot answered (it is routed with them after all).
local out = {}
for i = 1, #KEYS, 2 do
  local c = redis.call('HMGET', KEYS[i], 'state', 'owner', 'last_owner')
  local last = false
  if KEYS[i + 1] ~= KEYS[i] then last = redis.call('GET', KEYS[i + 1]) end
  local row = { state = c[1] or '', owner = c[2] or '', last_owner = c[3] or '', returning = last or '' }
  if c[1] == 'bot' or c[1] == 'bot_answered' or c[1] == 'abandoned' then
    local b = redis.call('HMGET', KEYS[i], 'enqueued_ms', 'group', 'priority', 'rule', 'bot_answered_ms', 'by',
      'conf', 'lang')
    row.enq, row.group, row.prio, row.rule, row.answered = b[1] or '0', b[2] or '', b[3] or '0', b[4] or '',
      b[5] or '0'
    row.by, row.conf, row.lang = b[6] or '', b[7] or '0', b[8] or ''
  end
  out[#out + 1] = row
end
return cjson.encode(out)
