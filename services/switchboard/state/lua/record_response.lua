-- Count one agent reply as a response (state.responses.record_response): the time from the conversation's
-- first customer message not answered yet to this reply, added to the group's and the agent's figures.
-- A resent reply (same reply id, same marker) returns the result stored the first time and counts nothing.
-- KEYS: the reply's processed marker, the conversation's response state, then the figures of the group (minute
--   bucket, day bucket) and of the agent (minute bucket, day bucket).
-- ARGV: reply ms, the conversation's opening (enqueued_ms as the router keeps it), target ms, the customer
--   messages as JSON [[received ms, message id], ...] oldest first, then TTLs (s) of the marker, minute buckets,
--   day buckets and the conversation's state.
-- Returns {result JSON, 1 when counted now / 0 when told again}.
local marker, conv = KEYS[1], KEYS[2]
local group_minute, group_day, agent_minute, agent_day = KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local reply_ms, opened, target_ms = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local messages = cjson.decode(ARGV[4])
local marker_ttl, minute_ttl, day_ttl, conv_ttl = ARGV[5], ARGV[6], ARGV[7], ARGV[8]

local done = redis.call('GET', marker)
if done then return { done, 0 } end

local state = redis.call('HMGET', conv, 'opened_ms', 'answered_ms', 'responses')
local answered, count = tonumber(state[2]) or 0, tonumber(state[3]) or 0
-- A closed conversation that opened again (an e-mail thread the customer writes to later) counts anew.
if state[1] ~= opened then
  answered, count = 0, 0
  redis.call('DEL', conv)
end

-- Several customer messages before one reply count from the first unanswered one; the reply answers every
-- customer message received up to it.
local start, start_id, through = nil, '', answered
for _, m in ipairs(messages) do
  local at = tonumber(m[1])
  if at > answered and at <= reply_ms then
    if not start then start, start_id = at, m[2] end
    if at > through then through = at end
  end
end

local result
if start then
  local ms = reply_ms - start
  local within = (ms <= target_ms) and 1 or 0
  local first = (count == 0) and 1 or 0
  for _, key in ipairs({ group_minute, group_day, agent_minute, agent_day }) do
    redis.call('HINCRBY', key, 'n', 1)
    redis.call('HINCRBY', key, 'within', within)
    redis.call('HINCRBY', key, 'sum_ms', ms)
    if first == 1 then
      redis.call('HINCRBY', key, 'first_n', 1)
      redis.call('HINCRBY', key, 'first_within', within)
      redis.call('HINCRBY', key, 'first_sum_ms', ms)
    end
  end
  redis.call('EXPIRE', group_minute, minute_ttl)
  redis.call('EXPIRE', agent_minute, minute_ttl)
  redis.call('EXPIRE', group_day, day_ttl)
  redis.call('EXPIRE', agent_day, day_ttl)
  redis.call('HSET', conv, 'opened_ms', opened, 'answered_ms', through, 'responses', count + 1)
  redis.call('HINCRBY', conv, 'sum_ms', ms)
  redis.call('HINCRBY', conv, 'within', within)
  if first == 1 then redis.call('HSET', conv, 'first_ms', ms) end
  result = cjson.encode({ responded = true, response_ms = ms, first = first == 1, within = within == 1,
    message_id = start_id, started_ms = start })
else
  result = cjson.encode({ responded = false })
end
redis.call('EXPIRE', conv, conv_ttl)
redis.call('SET', marker, result, 'EX', marker_ttl)
return { result, 1 }
