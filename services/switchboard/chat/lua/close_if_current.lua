-- Close only the id that is still open: a late close of an older conversation must not end the new one.
-- Returns 1 closed, 0 not the open one.
local customer_key = KEYS[1]
local conversation_id = ARGV[1]

if redis.call('GET', customer_key) == conversation_id then
  redis.call('DEL', customer_key)
  return 1
end
return 0
