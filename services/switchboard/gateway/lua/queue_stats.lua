#!lua flags=no-writes
-- One skill group's live figures, read-only: how many of its agents are available and, per channel, the oldest
-- enqueue time of the conversations at the head of its queue. Counting statuses here instead of one HGET per agent
-- from Python keeps a tick to one command per group (~40x cheaper for the replica at 20,000 sockets).
-- KEYS[1 .. agent_count]: the group's agent hashes; the KEYS after them: the conversations at its queue heads,
--   channel after channel (CHANNELS order), ARGV[2 ..] of them each.
-- ARGV[1]: agent_count; ARGV[2 ..]: how many head conversations each channel has.
-- Returns {available agents, oldest enqueued_ms per channel (0: none)}.
local agent_count = tonumber(ARGV[1])

local available = 0
for i = 1, agent_count do
  if redis.call('HGET', KEYS[i], 'status') == 'available' then available = available + 1 end
end
local out = {available}
local last = agent_count
for c = 2, #ARGV do
  local oldest = 0
  for i = last + 1, last + tonumber(ARGV[c]) do
    local at = tonumber(redis.call('HGET', KEYS[i], 'enqueued_ms'))
    if at and (oldest == 0 or at < oldest) then oldest = at end
  end
  last = last + tonumber(ARGV[c])
  out[#out + 1] = oldest
end
return out
