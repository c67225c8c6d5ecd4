-- Store the agent's desk view folded through a new seq and trim the outbox up to it, only if no other replica
-- moved the view since it was read (compare-and-set on `through`). Returns 1 done, 0 another replica won.
local view_key, outbox_key = KEYS[1], KEYS[2]
local expected_through, new_through, view_json, trim_minid = ARGV[1], ARGV[2], ARGV[3], ARGV[4]

local current = tonumber(redis.call('HGET', view_key, 'through') or '0')
if current ~= tonumber(expected_through) then return 0 end
redis.call('HSET', view_key, 'through', new_through, 'view', view_json)
redis.call('XTRIM', outbox_key, 'MINID', trim_minid)
return 1
