-- What planning needs to know of a batch's conversations, in one call: for each (conversation, customer) pair in
-- ARGV[2..], the conversation's state and last owner and the customer's last agent (熟客优先), '' when none.
local out = {}
for i = 2, #ARGV, 2 do
  local c = redis.call('HMGET', K('conv', ARGV[i]), 'state', 'last_owner')
  out[#out + 1] = c[1] or ''
  out[#out + 1] = c[2] or ''
  local last = false
  if ARGV[i + 1] ~= '' then last = redis.call('GET', K('returning', ARGV[i + 1])) end
  out[#out + 1] = last or ''
end
return out
