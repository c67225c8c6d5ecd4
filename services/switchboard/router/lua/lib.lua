-- Shared functions of the router's claim scripts. Every script runs atomically on one tenant's keys (all carry
-- the tenant hash tag), so checking an agent's capacity, claiming it, changing a conversation's owner and telling
-- the desktops happen as one step: two routers can never both take the last slot or both own a conversation.
--
-- ARGV[1] is the context (JSON): tenant `t`, time `now` (ms), key templates `k` (from keys.py, split around the
-- variable part), capacity rules `cap`, offer policies per group `pol`, queue aging `aging_ms`, affinity TTL
-- `aff_ttl`, router instance `inst`.
local C = cjson.decode(ARGV[1])
local NOW = tonumber(C.now)
local E = {}

local function K(name, id)
  local t = C.k[name]
  return t[1] .. id .. t[2]
end

local function qkey(group, ch)
  return K('queue', group .. ':' .. ch)
end

-- Scripts without a processed marker (drains, timeouts, requeues, overflow) keep their decisions in the tenant's
-- unsent set until the router has them on the routing topic, so a crash between script and send loses none.
local function unsent()
  if #E == 0 then return cjson.encode(E) end
  local out = cjson.encode(E)
  redis.call('ZADD', C.k.unsent, NOW, out)
  return out
end

local function emit(d)
  E[#E + 1] = d
  return d
end

-- Protobuf encoding of the few fields a DeskEvent needs (wire types 0 and 2 only).
local function varint(n)
  local out = {}
  while n >= 128 do
    out[#out + 1] = string.char(n % 128 + 128)
    n = math.floor(n / 128)
  end
  out[#out + 1] = string.char(n)
  return table.concat(out)
end

local function f_str(f, s)
  if s == nil or s == false or s == '' then return '' end
  return varint(f * 8 + 2) .. varint(#s) .. s
end

local function f_int(f, n)
  n = tonumber(n) or 0
  if n <= 0 then return '' end
  return varint(f * 8) .. varint(n)
end

local function f_ts(f, ms)
  ms = tonumber(ms) or 0
  if ms <= 0 then return '' end
  local s = math.floor(ms / 1000)
  return f_str(f, f_int(1, s) .. f_int(2, (ms - s * 1000) * 1000000))
end

-- DeskEventType: OFFER 1, ASSIGNED 2, MESSAGE 3, TRANSCRIPT 4, CLOSED 5, TRANSFERRED 6, REVOKED 7, STATUS 8.
-- RoutingEventType: QUEUED 1, OFFERED 2, ASSIGNED 3, ACCEPTED 4, DECLINED 5, TIMED_OUT 6, REQUEUED 7,
-- TRANSFERRED 8, CLOSED 9, MESSAGE_DELIVERED 10.
local function desk(agent, etype, conv, epoch, group, msg, deadline, rtype, rule, extra, rextra)
  local routing = f_str(2, C.t) .. f_str(3, conv) .. f_int(4, rtype) .. f_ts(5, NOW) .. f_str(6, group)
    .. f_str(7, agent) .. f_int(8, epoch) .. f_str(11, rule) .. f_str(21, C.inst) .. (rextra or '')
  local ev = f_str(1, C.t) .. f_str(2, agent) .. f_int(4, etype) .. f_str(5, conv) .. f_int(6, epoch)
    .. f_ts(7, NOW) .. f_str(8, msg) .. f_str(9, routing) .. f_ts(10, deadline) .. f_str(12, group) .. (extra or '')
  return desk_append(K('outbox', agent), K('seq', agent), C.k.notify, agent, ev)
end

local function listed(list, item)
  return string.find(',' .. (list or '') .. ',', ',' .. item .. ',', 1, true) ~= nil
end

-- A conversation's `declined` field: `agent@until_ms` entries of agents who declined or missed its offer (or
-- transferred it to a group). They are passed over for it until then only, so a conversation never waits for
-- good while an agent who once missed it has room; an entry without a time (an older router's) excludes nobody.
local function excluded(list, agent)
  if not list or list == '' then return false end
  for entry in string.gmatch(list, '[^,]+') do
    local a, t = string.match(entry, '^(.*)@(%d+)$')
    if a == agent and tonumber(t) > NOW then return true end
  end
  return false
end

-- Pass `agent` over for `conv` for `ms` from now (expired entries and the agent's older one are dropped).
local function exclude(ckey, agent, ms)
  local keep = {}
  for entry in string.gmatch(redis.call('HGET', ckey, 'declined') or '', '[^,]+') do
    local a, t = string.match(entry, '^(.*)@(%d+)$')
    if a and a ~= agent and tonumber(t) > NOW then keep[#keep + 1] = entry end
  end
  keep[#keep + 1] = agent .. '@' .. (NOW + ms)
  local out = table.concat(keep, ',')
  redis.call('HSET', ckey, 'declined', out)
  return out
end

-- Every message of an open conversation stays in its backlog (the newest BACKLOG_MAX) until it closes, so
-- whoever owns it next, after a requeue, timeout or transfer, gets the conversation so far.
local BACKLOG_MAX = 200
local function keep_message(conv, raw)
  local n = redis.call('RPUSH', K('backlog', conv), raw)
  if n > BACKLOG_MAX then redis.call('LTRIM', K('backlog', conv), -BACKLOG_MAX, -1) end
end

-- Why an agent cannot take one more conversation of channel `ch` in `group` now (nil: it can). Mirrors
-- chain.refusal, which plans over a snapshot; this is the check that counts.
local function refusal(agent, ch, group)
  local a = redis.call('HMGET', K('agent', agent), 'status', 'multiplier', 'groups',
    'cap:chat', 'cap:email', 'cap:phone', 'used:chat', 'used:email', 'used:phone')
  if a[1] ~= 'available' then return a[1] or 'offline' end
  if group and not listed(a[3], group) then return 'not_in_skill' end
  local mult = tonumber(a[2]) or 1
  if mult <= 0 then mult = 1 end
  local cap = { chat = tonumber(a[4]) or 0, email = tonumber(a[5]) or 0, phone = tonumber(a[6]) or 0 }
  local used = { chat = tonumber(a[7]) or 0, email = tonumber(a[8]) or 0, phone = tonumber(a[9]) or 0 }
  if used[ch] + 1 > math.floor(cap[ch] * mult) then return 'at_capacity' end
  if C.cap.pb and ch ~= 'phone' and used.phone > 0 then return 'phone_call_blocks' end
  if C.cap.units > 0 then
    local w = C.cap.w
    local in_use = used.chat * w.chat + used.email * w.email + used.phone * w.phone
    if in_use + w[ch] > math.floor(C.cap.units * mult) then return 'units_exhausted' end
  end
  return nil
end

local function policy(group)
  return C.pol[group] or C.pol['*']
end

local function leave_queues(ckey, conv, ch)
  local qs = redis.call('HGET', ckey, 'queues')
  if qs and qs ~= '' then
    for g in string.gmatch(qs, '[^,]+') do redis.call('ZREM', qkey(g, ch), conv) end
  end
end

-- ASSIGNED with the conversation's first kept message, then MESSAGE for the rest in order: a new owner (or the
-- same agent under a new epoch) gets the whole conversation so far. The backlog stays until the close; desktops
-- recognise messages they saw under an earlier epoch by message_id.
local function deliver_backlog(agent, conv, epoch, group, rule, rtype)
  local msgs = redis.call('LRANGE', K('backlog', conv), 0, -1)
  desk(agent, 2, conv, epoch, group, msgs[1], 0, rtype or 3, rule)
  for i = 2, #msgs do desk(agent, 3, conv, epoch, group, msgs[i], 0, 10, '') end
  return #msgs
end

-- Take `agent`'s capacity for `conv` and make it the owner (or the offered agent): one atomic step with the
-- desk events that tell the agent.
local function claim(conv, agent, group, step)
  local ckey = K('conv', conv)
  local c = redis.call('HMGET', ckey, 'channel', 'customer_id', 'rule', 'group', 'enqueued_ms', 'priority')
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
    channel = ch, enq = tonumber(c[5]) or NOW, prio = tonumber(c[6]) or 0, rule = c[3] or '' }
  local pol = policy(c[4])
  if pol.mode == 'offer' then
    local deadline = NOW + pol.ms
    redis.call('HSET', ckey, 'state', 'offered', 'owner', '', 'offer_agent', agent, 'offer_deadline_ms', deadline,
      'queues', '', 'served_group', group)
    redis.call('ZADD', C.k.offers, deadline, conv)
    desk(agent, 1, conv, epoch, group, redis.call('LINDEX', K('backlog', conv), 0), deadline, 2, c[3])
    d.type = 'offered'
    d.deadline = deadline
  else
    redis.call('HSET', ckey, 'state', 'assigned', 'owner', agent, 'offer_agent', '', 'offer_deadline_ms', 0,
      'queues', '', 'served_group', group, 'declined', '')
    deliver_backlog(agent, conv, epoch, group, c[3])
  end
  return emit(d)
end

-- Give back the capacity `agent` holds for `conv` (idempotent: the agent's set of conversations says whether
-- it still holds it).
-- Capacity may have grown in the agent's groups: bump their versions, so a claim planned on an older snapshot
-- re-checks those groups' agents before it queues a conversation.
local function bump(agent)
  local groups = redis.call('HGET', K('agent', agent), 'groups')
  if groups then
    for g in string.gmatch(groups, '[^,]+') do redis.call('INCR', K('capver', g)) end
  end
end

local function release(agent, conv, ch)
  bump(agent)
  if redis.call('SREM', K('agent_convs', agent), conv) == 1 then
    local left = redis.call('HINCRBY', K('agent', agent), 'used:' .. ch, -1)
    if left < 0 then redis.call('HSET', K('agent', agent), 'used:' .. ch, 0) end
  end
end

-- The candidate chain's last word: try the planned candidates in order; if the plan was stale and none fits,
-- look at every member of the groups before queueing, so nothing waits while an eligible agent has room.
local function route(conv, cands, groups, verdicts, versions)
  local ckey = K('conv', conv)
  local c = redis.call('HMGET', ckey, 'channel', 'group', 'declined', 'priority', 'enqueued_ms', 'rule')
  local ch, primary, declined = c[1], c[2], c[3]
  if #groups == 0 then groups = { primary } end
  local tried = {}
  local stale = false
  for _, cand in ipairs(cands) do
    tried[cand.a] = true
    local why
    if excluded(declined, cand.a) then why = 'declined_or_missed' else why = refusal(cand.a, ch, cand.g) end
    if not why then
      local d = claim(conv, cand.a, cand.g, cand.s)
      d.verdicts = verdicts
      return d
    end
    verdicts[#verdicts + 1] = { a = cand.a, g = cand.g, s = cand.s, r = why .. ':at_claim' }
    stale = true
  end
  for _, g in ipairs(groups) do
    -- Skip the re-check when the plan's candidates were current and no capacity grew in the group since the
    -- snapshot the plan was made on (a candidate taken by another router means the snapshot was stale).
    local unchanged = not stale and versions and versions[g] ~= nil
      and (tonumber(redis.call('GET', K('capver', g))) or 0) == tonumber(versions[g])
    local members = {}
    if not unchanged then members = redis.call('SMEMBERS', K('group_agents', g)) end
    for _, a in ipairs(members) do
      if not tried[a] then
        tried[a] = true
        if not excluded(declined, a) and not refusal(a, ch, g) then
          local d = claim(conv, a, g, 'recheck')
          d.verdicts = verdicts
          return d
        end
      end
    end
  end
  local prio = tonumber(c[4]) or 0
  local enq = tonumber(c[5]) or NOW
  local score = enq - prio * C.aging_ms
  for _, g in ipairs(groups) do redis.call('ZADD', qkey(g, ch), score, conv) end
  redis.call('HSET', ckey, 'state', 'queued', 'owner', '', 'offer_agent', '', 'offer_deadline_ms', 0,
    'queues', table.concat(groups, ','))
  local pos = redis.call('ZRANK', qkey(primary, ch), conv) + 1
  return emit({ type = 'queued', conv = conv, group = primary, pos = pos, verdicts = verdicts, channel = ch,
    enq = enq, prio = prio, rule = c[6] or '', groups = groups, epoch = tonumber(redis.call('HGET', ckey, 'epoch')) or 0 })
end

-- Work-conserving drain: while the agent has room, take the best-scored conversation it may serve across its
-- groups and channels. Queues are sorted sets by `enqueued - priority * aging`, lowest first.
local function drain(agent)
  local groups = redis.call('HGET', K('agent', agent), 'groups')
  if not groups or groups == '' then return end
  bump(agent)
  for _ = 1, 200 do
    local best, best_score, best_group
    for _, ch in ipairs({ 'chat', 'email', 'phone' }) do
      if not refusal(agent, ch, nil) then
        for g in string.gmatch(groups, '[^,]+') do
          local head = redis.call('ZRANGE', qkey(g, ch), 0, 9, 'WITHSCORES')
          for i = 1, #head, 2 do
            local s = tonumber(head[i + 1])
            if best_score and s >= best_score then break end
            if not excluded(redis.call('HGET', K('conv', head[i]), 'declined'), agent) then
              best, best_score, best_group = head[i], s, g
              break
            end
          end
        end
      end
    end
    if not best then return end
    claim(best, agent, best_group, 'drain')
  end
end
