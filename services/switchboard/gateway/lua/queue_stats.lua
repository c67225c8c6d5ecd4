#!lua flags=no-writes
-- One skill group's live figures, read-only: how many of its agents are available and the oldest enqueue time
-- of the conversations at the heads of its queues. Counting statuses here instead of one HGET per agent from
-- Python keeps a tick to one command per group (~40x cheaper for the replica at 20,000 sockets).
-- KEYS[1 .. agent_count]: the group's agent hashes; the KEYS after them: the conversations at its queue heads.
-- Returns {available agents, oldest enqueued_ms (0: none)}.
local agent_count = tonumber(ARGV[1])

local available, oldest = 0, 0
for i = 1, agent_count do
  if redis.call('HGET', KEYS[i], 'status') == 'available' then available = available + 1 end
end
for i = agent_count + 1, #KEYS do
  local at = tonumber(redis.call('HGET', KEYS[i], 'enqueued_ms'))
  if at and (oldest == 0 or at < oldest) then oldest = at end
end
return {available, oldest}
