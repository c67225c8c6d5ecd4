-- Clear an agent's pending mark after its AgentPresence record was acked, unless a newer change came in
-- meanwhile (that change publishes itself). Returns 1 cleared, 0 kept.
local agent_key, pending_key = KEYS[1], KEYS[2]
local agent_id, published_version = ARGV[1], ARGV[2]

local v = (tonumber(redis.call('HGET', agent_key, 'presence_version')) or 0)
if v <= tonumber(published_version) then redis.call('ZREM', pending_key, agent_id) return 1 end
return 0
