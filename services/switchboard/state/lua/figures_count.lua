-- Count one outcome of one arrival of a conversation (answered or abandoned) in its group's minute, once: the
-- marker says this arrival was counted already (a redelivered decision, a re-sent one, a requeued conversation
-- answered again). Returns 1 counted, 0 already counted.
local marker_key, minute_key = KEYS[1], KEYS[2]
local count_field, sum_field, wait_ms = ARGV[1], ARGV[2], ARGV[3]
local marker_ttl_s, minute_ttl_s = ARGV[4], ARGV[5]

if not redis.call('SET', marker_key, '1', 'NX', 'EX', marker_ttl_s) then return 0 end
redis.call('HINCRBY', minute_key, count_field, 1)
redis.call('HINCRBY', minute_key, sum_field, wait_ms)
redis.call('EXPIRE', minute_key, minute_ttl_s)
return 1
