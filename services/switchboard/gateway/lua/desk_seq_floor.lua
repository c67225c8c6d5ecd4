-- Raise an agent's desk seq counter to at least ARGV[1] (the highest seq a connected desk was sent): after Redis
-- lost the counter, new events must not reuse seqs the desk already has. Returns the counter after the call.
local current = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local floor = tonumber(ARGV[1])
if current < floor then
  redis.call('SET', KEYS[1], floor)
  return floor
end
return current
