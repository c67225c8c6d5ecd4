-- Shared functions of the router's scripts: the atomic half of routing.
--
-- Who owns which rule: every routing rule (classification, candidate chain, capacity arithmetic, exclusion
-- back-off, queue score, drain order, offer or direct assignment, when missed offers set an agent away, which
-- agent may accept, decline, close or transfer) is decided in Python by `switchboard.routing`, over state the
-- router read. A script only checks that what the plan assumed still holds and applies it, in one atomic step
-- with the desk events that tell the agents: an agent is unchanged when its presence_version and its used slots
-- are (presence bumps the version on every change of status, skills, capacity or multiplier), a conversation
-- when its state, owner, offered agent and epoch are, a group's capacity when its capacity version is. What no
-- longer holds is not applied; the result says so and the router plans again from fresh state.
--
-- Each script begins with begin(context, KEYS): KEYS are every key the script touches, declared by the caller
-- (router/scripts.py), all with the tenant's hash tag, so the scripts run on Redis Cluster; K() builds a key from
-- its template and refuses one not declared. The context (ARGV[1] of every script, JSON): tenant `t`, time `now`
-- (ms), key templates `k`, affinity TTL `aff_ttl` (s), marker TTL `ttl` (s), router instance `inst`, and the
-- router's state mark `mark` when the router checks it (begin refuses to run without it: LOST).
local C = {}
local NOW = 0
local E = {}
local DECLARED = {}

local function declared(key)
  if not DECLARED[key] then error('switchboard: undeclared key ' .. key) end
  return key
end

local function begin(context, keys)
  C = cjson.decode(context)
  NOW = tonumber(C.now)
  for _, key in ipairs(keys) do DECLARED[key] = true end
  -- The router's state mark of the tenant (`mark`, declared): missing means Redis lost the router's state, and
  -- nothing may be written into it before the rebuild (router/rebuild.py). The error is the LOST reply.
  if C.mark and redis.call('EXISTS', declared(C.mark)) == 0 then
    error('switchboard: state lost ' .. C.t)
  end
end

-- A per-id key of the tenant (agent, conversation, queue ...), from its template.
local function K(name, id)
  local t = C.k[name]
  return declared(t[1] .. id .. t[2])
end

-- A tenant-wide key (offers, unsent decisions, presence pending, desk notify channel).
local function T(name)
  return declared(C.k[name])
end

local function qkey(group, ch)
  return K('queue', group .. ':' .. ch)
end

local function emit(d)
  E[#E + 1] = d
  return d
end

-- Every decision of a conversation says what classified it (contract.Decision by, conf, crule), from the
-- conversation's hash, so later events (ASSIGNED after a wait, ABANDONED, CLOSED ...) carry it like the first.
local function classified()
  for _, d in ipairs(E) do
    if d.conv and d.conv ~= '' and d.by == nil then
      local t = C.k['conv']
      local ckey = t[1] .. d.conv .. t[2]
      if DECLARED[ckey] then
        local c = redis.call('HMGET', ckey, 'by', 'conf', 'rule')
        if c[1] and c[1] ~= '' then
          d.by, d.conf, d.crule = c[1], tonumber(c[2]) or 0, c[3] or ''
        end
      end
    end
  end
end

-- Scripts without a processed marker (drains, timeouts, requeues, overflow) keep their decisions in the tenant's
-- unsent set until the router has them on the routing topic, so a crash between script and send loses none.
local function unsent()
  if #E == 0 then return '[]' end
  classified()
  local out = cjson.encode(E)
  redis.call('ZADD', T('unsent'), NOW, out)
  return out
end

-- Decisions of a script with a processed marker: stored with it, so a redelivered record changes nothing twice.
local function marked(marker, id_field, id)
  classified()
  for _, d in ipairs(E) do d[id_field] = id end
  local out = '[]'
  if #E > 0 then out = cjson.encode(E) end
  redis.call('SET', marker, out, 'EX', C.ttl)
  return out
end

-- A desk event for an agent's outbox, as named fields; state/outbox.py builds the DeskEvent from them with the
-- protobuf classes generated from proto/ (no field numbers here). `ev` holds type (a DeskEventType name without
-- its prefix, lower case), conv, epoch, group, msg (InboundMessage bytes), deadline, routing (a RoutingEventType
-- name), rule and, for status events, status, changed_by, reason.
local function desk(agent, ev)
  local fields = { 'tenant', C.t, 'agent', agent, 'at', NOW, 'inst', C.inst }
  for name, value in pairs(ev) do
    if value ~= nil and value ~= false and value ~= '' then
      fields[#fields + 1] = name
      fields[#fields + 1] = tostring(value)
    end
  end
  return desk_append_fields(K('outbox', agent), K('seq', agent), T('notify'), agent, fields)
end

-- The plan assumed this agent as it read it: same presence version, same used slots.
local function agent_unchanged(agent, expect)
  local a = redis.call('HMGET', K('agent', agent), 'presence_version', 'used:chat', 'used:email', 'used:phone')
  return (a[1] or '') == expect.v and (tonumber(a[2]) or 0) == expect.u[1] and (tonumber(a[3]) or 0) == expect.u[2]
    and (tonumber(a[4]) or 0) == expect.u[3]
end

-- The plan assumed this conversation as it read it.
local function conv_unchanged(conv, expect)
  local c = redis.call('HMGET', K('conv', conv), 'state', 'owner', 'offer_agent', 'epoch')
  return (c[1] or '') == expect.state and (c[2] or '') == expect.owner and (c[3] or '') == expect.offer_agent
    and (tonumber(c[4]) or 0) == expect.epoch
end

-- Every message of an open conversation stays in its backlog (the newest BACKLOG_MAX) until it closes, so
-- whoever owns it next, after a requeue, timeout or transfer, gets the conversation so far.
local BACKLOG_MAX = 200
local function keep_message(conv, raw)
  local n = redis.call('RPUSH', K('backlog', conv), raw)
  if n > BACKLOG_MAX then redis.call('LTRIM', K('backlog', conv), -BACKLOG_MAX, -1) end
end

local function leave_queues(ckey, conv, ch)
  local qs = redis.call('HGET', ckey, 'queues')
  if qs and qs ~= '' then
    for g in string.gmatch(qs, '[^,]+') do redis.call('ZREM', qkey(g, ch), conv) end
  end
end

-- ASSIGNED with the conversation's first kept message, then MESSAGE for the rest in order: a new owner (or the
-- same agent under a new epoch) gets the whole conversation so far. Desktops recognise messages they saw under
-- an earlier epoch by message_id.
local function deliver_backlog(agent, conv, epoch, group, rule, routing, note)
  local msgs = redis.call('LRANGE', K('backlog', conv), 0, -1)
  local c = redis.call('HMGET', K('conv', conv), 'by', 'conf')
  desk(agent, { type = 'assigned', conv = conv, epoch = epoch, group = group, msg = msgs[1],
    routing = routing or 'assigned', rule = rule, by = c[1], conf = c[2] })
  for i = 2, #msgs do
    desk(agent, { type = 'message', conv = conv, epoch = epoch, group = group, msg = msgs[i],
      routing = 'message_delivered' })
  end
  return #msgs
end

-- Capacity may have grown in the agent's groups (the request's `bump`: the groups of the agents it releases, as
-- the router read them): bump their versions, so a plan to queue made on an older read is not applied.
local BUMP = {}
local function bump()
  for _, g in ipairs(BUMP) do redis.call('INCR', K('capver', g)) end
end

-- Give back the capacity `agent` holds for `conv` (idempotent: the agent's set of conversations says whether
-- it still holds it).
local function release(agent, conv, ch)
  bump()
  if redis.call('SREM', K('agent_convs', agent), conv) == 1 then
    local left = redis.call('HINCRBY', K('agent', agent), 'used:' .. ch, -1)
    if left < 0 then redis.call('HSET', K('agent', agent), 'used:' .. ch, 0) end
  end
end

-- Whether this is the conversation's first offer (`field` = 'offer_measured') or assignment ('assign_measured')
-- since its arrival `enq` (its enqueued_ms as stored): a re-offer after a timeout, or the assignment after an agent
-- left, keeps the arrival and is not measured again (the router's time-to-offer / time-to-assign histograms).
local function first_since_arrival(ckey, field, enq)
  if not enq or redis.call('HGET', ckey, field) == enq then return false end
  redis.call('HSET', ckey, field, enq)
  return true
end

-- Take `agent`'s slot for `conv` and make it the owner, or the offered agent when the plan gives an offer
-- deadline: one atomic step with the desk events that tell the agent.
local function claim(conv, agent, group, step, deadline)
  local ckey = K('conv', conv)
  local c = redis.call('HMGET', ckey, 'channel', 'customer_id', 'rule', 'enqueued_ms', 'priority', 'group', 'by',
    'conf', 'lang')
  local ch = c[1]
  local akey = K('agent', agent)
  redis.call('HINCRBY', akey, 'used:' .. ch, 1)
  redis.call('HSET', akey, 'last_assigned_ms', NOW)
  leave_queues(ckey, conv, ch)
  local epoch = redis.call('HINCRBY', ckey, 'epoch', 1)
  redis.call('SADD', K('agent_convs', agent), conv)
  if c[2] and c[2] ~= '' and C.aff_ttl > 0 then
    redis.call('SET', K('returning', c[2]), agent, 'EX', C.aff_ttl)
  end
  local d = { type = 'assigned', conv = conv, agent = agent, group = group, step = step, epoch = epoch,
    channel = ch, enq = tonumber(c[4]) or NOW, prio = tonumber(c[5]) or 0, rule = c[3] or '', home = c[6] or '',
    lang = c[9] or '' }
  if deadline > 0 then
    redis.call('HSET', ckey, 'state', 'offered', 'owner', '', 'offer_agent', agent, 'offer_deadline_ms', deadline,
      'queues', '', 'served_group', group)
    redis.call('ZADD', T('offers'), deadline, conv)
    desk(agent, { type = 'offer', conv = conv, epoch = epoch, group = group,
      msg = redis.call('LINDEX', K('backlog', conv), 0), deadline = deadline, routing = 'offered', rule = c[3],
      by = c[7], conf = c[8] })
    d.type = 'offered'
    d.deadline = deadline
    if first_since_arrival(ckey, 'offer_measured', c[4]) then d.first = true end
  else
    if first_since_arrival(ckey, 'assign_measured', c[4]) then d.first = true end
    redis.call('HSET', ckey, 'state', 'assigned', 'owner', agent, 'offer_agent', '', 'offer_deadline_ms', 0,
      'queues', '', 'served_group', group, 'declined', '')
    deliver_backlog(agent, conv, epoch, group, c[3])
  end
  return emit(d)
end

-- Put a conversation in its groups' queues with the score the plan computed.
local function enqueue(conv, groups, score)
  local ckey = K('conv', conv)
  local c = redis.call('HMGET', ckey, 'channel', 'group', 'priority', 'enqueued_ms', 'rule', 'epoch', 'lang')
  local ch = c[1]
  for _, g in ipairs(groups) do redis.call('ZADD', qkey(g, ch), score, conv) end
  redis.call('HSET', ckey, 'state', 'queued', 'owner', '', 'offer_agent', '', 'offer_deadline_ms', 0,
    'queues', table.concat(groups, ','))
  local pos = redis.call('ZRANK', qkey(groups[1] or c[2], ch), conv)
  return { type = 'queued', conv = conv, group = c[2], pos = (pos or 0) + 1, channel = ch,
    enq = tonumber(c[4]) or NOW, prio = tonumber(c[3]) or 0, rule = c[5] or '', epoch = tonumber(c[6]) or 0,
    lang = c[7] or '' }
end

-- A route plan (contract.Route): the first candidate still as the plan read it takes the conversation; with none,
-- it is queued. A queue plan whose groups' capacity changed since the read, or candidates that all changed, are
-- queued too but marked `stale`: the router then drains those groups for agents with room, so nothing waits
-- while an eligible agent has room.
local function route(conv, plan)
  local changed = {}
  for _, cand in ipairs(plan.cands) do
    if agent_unchanged(cand.a, cand.expect) then
      local d = claim(conv, cand.a, cand.g, cand.s, plan.deadline)
      d.changed = changed
      return d
    end
    changed[#changed + 1] = cand.a
  end
  local stale = #changed > 0
  for g, version in pairs(plan.versions) do
    if (tonumber(redis.call('GET', K('capver', g))) or 0) ~= version then stale = true end
  end
  local d = emit(enqueue(conv, plan.groups, plan.score))
  d.changed = changed
  d.stale = stale
  return d
end

-- Customers who leave while waiting (abandon.lua) and come back (inbound.lua).
-- A returning customer is routed again with the original arrival: the backlog waits for them this long.
local KEEP_BACKLOG_S = 86400

-- Take a queued or offered conversation out of the queue because its customer left (`st`: state, offer_agent,
-- channel, group, enqueued_ms, epoch, priority of its hash). Frees only what it held: an offer's slot, with the
-- offer revoked on the agent's desk.
local function abandon_conversation(conv, st, reason)
  local ckey = K('conv', conv)
  local agent, ch, group = st[2] or '', st[3], st[4]
  leave_queues(ckey, conv, ch)
  if st[1] == 'offered' and agent ~= '' then
    release(agent, conv, ch)
    redis.call('ZREM', T('offers'), conv)
    desk(agent, { type = 'revoked', conv = conv, epoch = tonumber(st[6]), group = group, routing = 'abandoned',
      rule = 'customer_left:' .. reason })
  else
    agent = ''
  end
  local e = redis.call('HINCRBY', ckey, 'epoch', 1)
  redis.call('HSET', ckey, 'state', 'abandoned', 'owner', '', 'offer_agent', '', 'offer_deadline_ms', 0,
    'queues', '', 'abandoned_ms', NOW)
  redis.call('EXPIRE', K('backlog', conv), KEEP_BACKLOG_S)
  local enq = tonumber(st[5]) or NOW
  return emit({ type = 'abandoned', conv = conv, agent = agent, group = group, channel = ch, epoch = e, enq = enq,
    wait = NOW - enq, prio = tonumber(st[7]) or 0, reason = reason })
end

-- A customer who left while waiting writes again: the conversation is routed with its original arrival (the
-- caller's `since`, as for the bot's) and the messages written before, kept from now on.
local function returns(conv, state)
  if state == 'abandoned' then redis.call('PERSIST', K('backlog', conv)) end
end
