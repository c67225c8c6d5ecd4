-- The customer's open conversation id, or open `fresh_id`: two messages racing on two replicas still get one id.
-- Refreshes the TTL of the customer's key, and of the reverse key of `known_id` (KEYS[3], optional) when that is
-- still the open id: a socket names the id it last saw, so a message refreshes both in one round trip. The caller
-- refreshes the reverse key of an open id it did not know (named by that id, which only this script reads).
-- Returns the open id.
local customer_key, fresh_reverse_key, known_reverse_key = KEYS[1], KEYS[2], KEYS[3]
local fresh_id, customer_id, ttl_s, known_id = ARGV[1], ARGV[2], ARGV[3], ARGV[4]

local current = redis.call('GET', customer_key)
if current then
  redis.call('EXPIRE', customer_key, ttl_s)
  if known_reverse_key and current == known_id then redis.call('EXPIRE', known_reverse_key, ttl_s) end
  return current
end
redis.call('SET', customer_key, fresh_id, 'EX', ttl_s)
redis.call('SET', fresh_reverse_key, customer_id, 'EX', ttl_s)
return fresh_id
