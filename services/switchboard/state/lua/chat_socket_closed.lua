-- A chat customer's widget socket closed. When it was their last one on every replica, their open conversation is
-- marked gone since now (kept if already marked: the earliest time counts); the router's sweep abandons it once
-- the tenant's patience has passed while it is still waiting. Returns 1 when marked, 0 otherwise.
local sockets_key, conversation_key, gone_key = KEYS[1], KEYS[2], KEYS[3]
local connection_id, now_ms = ARGV[1], ARGV[2]

redis.call('SREM', sockets_key, connection_id)
if redis.call('SCARD', sockets_key) > 0 then return 0 end
local conv = redis.call('GET', conversation_key)
if not conv then return 0 end
redis.call('ZADD', gone_key, 'NX', now_ms, conv)
return 1
