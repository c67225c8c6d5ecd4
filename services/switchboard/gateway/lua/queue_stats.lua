#!lua flags=no-writes
-- One skill group's live figures, read-only: how many of its agents are available and, per channel, the oldest
-- enqueue time of the conversations at the head of its queue. Counting statuses here instead of one HGET per agent
-- from Python keeps a tick to one command per group (~40x cheaper for the replica at 20,000 sockets).
-- KEYS[1 .. agent_count]: the group's agent hashes; the KEYS after them: the conversations at its queue heads,
--   channel after channel (CHANNELS order), ARGV[2 ..] of them each.
-- ARGV[1]: agent_count; ARGV[2 ..]: how many head conversations each channel has.
-- Returns {available agents, oldest enqueued_ms per channel (0: none)}.
local agent_count = tonumber(ARGV[1])
local head_counts = {}
for c = 2, #ARGV do head_counts[#head_counts + 1] = tonumber(ARGV[c]) end

local available = 0
for i = 1, agent_count do
  if redis.call('HGET', KEYS[i], 'status') == 'available' then available = available + 1 end
end
local out = {available}
append_oldest_per_channel(KEYS, head_counts, agent_count, out)
return out
