-- Claim agents pending since before the cutoff for republishing, re-scoring them to now so another replica's
-- sweep skips them. Returns the claimed agent ids.
local pending_key = KEYS[1]
local now, cutoff_ms, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])

local ids = redis.call('ZRANGEBYSCORE', pending_key, '-inf', cutoff_ms, 'LIMIT', 0, limit)
for _, id in ipairs(ids) do redis.call('ZADD', pending_key, now, id) end
return ids
