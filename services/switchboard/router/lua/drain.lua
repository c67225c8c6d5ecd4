-- Work for an agent with room (contract.DrainRequest): the queued conversations the router picked for it, best
-- first (routing/drain.py owns the order and the capacity arithmetic). Applied only if the agent is as the router
-- read it; a pick no longer queued at the epoch read (another router or agent took it) is skipped, which never
-- takes more than the plan counted.
-- KEYS: the agent's hash, conversations, outbox and seq; each pick's hash and backlog, its customer's
--   returning-agent key, the queues of its groups; the agent's groups' capacity versions; offers, notify, unsent.
-- ARGV[1]: context; ARGV[2]: request JSON.
local context, request = ARGV[1], ARGV[2]
begin(context, KEYS)
local M = cjson.decode(request)
BUMP = M.bump
if not agent_unchanged(M.agent, M.expect) then
  return cjson.encode({ { type = 'drain_changed', agent = M.agent } })
end
bump()
for _, pick in ipairs(M.picks) do
  local c = redis.call('HMGET', K('conv', pick.conv), 'state', 'epoch')
  if c[1] == 'queued' and (tonumber(c[2]) or 0) == pick.epoch then
    claim(pick.conv, M.agent, pick.group, 'drain', pick.deadline)
  end
end
return unsent()
