-- Move a surge schedule from one state to the next exactly once across replicas. Returns 1 moved, 0 not.
local schedules_key = KEYS[1]
local schedule_id, expected_state, new_doc = ARGV[1], ARGV[2], ARGV[3]

local raw = redis.call('HGET', schedules_key, schedule_id)
if not raw then return 0 end
local doc = cjson.decode(raw)
if doc['state'] ~= expected_state then return 0 end
redis.call('HSET', schedules_key, schedule_id, new_doc)
return 1
