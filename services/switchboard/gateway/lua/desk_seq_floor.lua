-- Raise an agent's desk seq counter to at least ARGV[1] (the highest seq a connected desk was sent): after Redis
-- lost the counter, new events must not reuse seqs the desk already has. Returns the counter after the call.
local seq_key = KEYS[1]
local floor = tonumber(ARGV[1])

local current = tonumber(redis.call('GET', seq_key) or '0') or 0
if current < floor then
  redis.call('SET', seq_key, floor)
  return floor
end
return current
