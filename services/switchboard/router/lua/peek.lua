-- What planning needs to know of a batch's conversations, in one read-only call.
-- KEYS: per message, its conversation's hash then its customer's returning-agent key (the conversation's hash
--   again when it has no customer id).
-- ARGV: none. Returns JSON (contract.Peek per message): the conversation's state, owner and last owner, and the
--   customer's last agent (熟客优先), '' for each one missing; the original arrival of an abandoned one.
local out = {}
for i = 1, #KEYS, 2 do
  local c = redis.call('HMGET', KEYS[i], 'state', 'owner', 'last_owner', 'enqueued_ms')
  local last = false
  if KEYS[i + 1] ~= KEYS[i] then last = redis.call('GET', KEYS[i + 1]) end
  local row = { state = c[1] or '', owner = c[2] or '', last_owner = c[3] or '', returning = last or '' }
  if c[1] == 'abandoned' then row.enqueued_ms = tonumber(c[4]) or 0 end
  out[#out + 1] = row
end
return cjson.encode(out)
