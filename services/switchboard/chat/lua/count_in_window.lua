-- Count one message of a chat customer in a rate window: INCR, and set the window's expiry on first use, in one
-- round trip. Returns the count so far in the window.
local counter_key = KEYS[1]
local ttl_s = ARGV[1]

local n = redis.call('INCR', counter_key)
if n == 1 then redis.call('EXPIRE', counter_key, ttl_s) end
return n
