-- Take every reply kept for a customer at once: two sockets opening together must not both get them.
-- Returns the frames, oldest first.
local pending_key = KEYS[1]

local frames = redis.call('LRANGE', pending_key, 0, -1)
redis.call('DEL', pending_key)
return frames
