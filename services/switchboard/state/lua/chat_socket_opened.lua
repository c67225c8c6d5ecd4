-- A chat customer's widget socket opened (on any chat replica): the customer is reachable again, so their open
-- conversation is no longer marked gone.
local sockets_key, conversation_key, gone_key = KEYS[1], KEYS[2], KEYS[3]
local connection_id, ttl_s = ARGV[1], ARGV[2]

redis.call('SADD', sockets_key, connection_id)
redis.call('EXPIRE', sockets_key, ttl_s)
local conv = redis.call('GET', conversation_key)
if conv then redis.call('ZREM', gone_key, conv) end
return 1
