-- Raise a call's next_seq, never lower it (two deliveries of one call may finish in either order), and refresh
-- the call's TTL. Returns 1.
local call_key = KEYS[1]
local next_seq, ttl_s = ARGV[1], ARGV[2]

local current = tonumber(redis.call('HGET', call_key, 'next_seq') or '0')
if tonumber(next_seq) > current then
  redis.call('HSET', call_key, 'next_seq', next_seq)
end
redis.call('EXPIRE', call_key, ttl_s)
return 1
