-- A queued conversation's overflow ring fired (contract.OverflowRequest: it waited past `after_s`, or its group's
-- estimated wait or service level crossed the ring's threshold): the ring's queue takes it too, with the same
-- score. Applied only if it is still queued at the epoch, and in the queues, the router read.
-- KEYS: the conversation's hash, the queues of its groups and the ring's, unsent.
-- ARGV[1]: context; ARGV[2]: request JSON.
local context, request = ARGV[1], ARGV[2]
begin(context, KEYS)
local M = cjson.decode(request)
local ckey = K('conv', M.conv)
local st = redis.call('HMGET', ckey, 'state', 'epoch', 'queues', 'channel', 'lang')
if st[1] ~= 'queued' or (tonumber(st[2]) or 0) ~= M.epoch or st[3] ~= M.queues then return unsent() end
redis.call('ZADD', qkey(M.ring, st[4]), M.score, M.conv)
redis.call('HSET', ckey, 'queues', st[3] .. ',' .. M.ring)
local d = emit({ type = 'queued', conv = M.conv, group = M.ring, channel = st[4], overflow = M.ring,
  epoch = tonumber(st[2]), pos = redis.call('ZRANK', qkey(M.ring, st[4]), M.conv) + 1, stale = true,
  reason = M.why, lang = st[5] or '' })
return unsent()
