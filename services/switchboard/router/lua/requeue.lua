-- An agent left, offline past the grace period (contract.RequeueRequest): every conversation they own or were
-- offered goes back to its queue with its original enqueue time and priority (the router computed each score).
-- Applied only if the agent is as the router read it (still offline since then).
-- KEYS: the agent's hash, conversations, outbox and seq; each conversation's hash and its groups' queues;
--   the groups' capacity versions; offers, notify, unsent.
-- ARGV[1]: context; ARGV[2]: request JSON.
local context, request = ARGV[1], ARGV[2]
begin(context, KEYS)
local M = cjson.decode(request)
BUMP = M.bump
local agent = M.agent
if not agent_unchanged(agent, M.expect) then return unsent() end
for _, item in ipairs(M.convs) do
  local conv = item.conv
  local ckey = K('conv', conv)
  local st = redis.call('HMGET', ckey, 'state', 'owner', 'offer_agent', 'channel', 'group', 'epoch')
  if (st[1] == 'assigned' and st[2] == agent) or (st[1] == 'offered' and st[3] == agent) then
    release(agent, conv, st[4])
    redis.call('ZREM', T('offers'), conv)
    local e = redis.call('HINCRBY', ckey, 'epoch', 1)
    redis.call('HSET', ckey, 'owner', '', 'offer_agent', '', 'last_owner', agent, 'state', 'new', 'queues', '')
    desk(agent, { type = 'revoked', conv = conv, epoch = tonumber(st[6]), group = st[5], routing = 'requeued',
      rule = 'agent_left' })
    emit({ type = 'requeued', conv = conv, prev = agent, agent = '', epoch = e, group = st[5], channel = st[4] })
    local d = emit(enqueue(conv, { st[5] }, item.score))
    d.stale = true
  else
    redis.call('SREM', K('agent_convs', agent), conv)
  end
end
return unsent()
