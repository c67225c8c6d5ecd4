-- The customer's open conversation id, or open `fresh_id`: two messages racing on two replicas still get one id.
-- Refreshes the TTL of the customer's key; the caller refreshes the reverse key of an id that was already open
-- (named by that id, which only this script reads). Returns the open id.
local customer_key, fresh_reverse_key = KEYS[1], KEYS[2]
local fresh_id, customer_id, ttl_s = ARGV[1], ARGV[2], ARGV[3]

local current = redis.call('GET', customer_key)
if current then
  redis.call('EXPIRE', customer_key, ttl_s)
  return current
end
redis.call('SET', customer_key, fresh_id, 'EX', ttl_s)
redis.call('SET', fresh_reverse_key, customer_id, 'EX', ttl_s)
return fresh_id
