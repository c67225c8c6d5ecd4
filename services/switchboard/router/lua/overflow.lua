-- A queued conversation waited past an overflow ring's `after_s`: its secondary group may take it too.
-- ARGV[2]: JSON {conv, ring}.
local M = cjson.decode(ARGV[2])
local ckey = K('conv', M.conv)
local st = redis.call('HMGET', ckey, 'state', 'queues')
if st[1] ~= 'queued' or listed(st[2], M.ring) then return cjson.encode(E) end
local groups = {}
for g in string.gmatch(st[2] or '', '[^,]+') do groups[#groups + 1] = g end
groups[#groups + 1] = M.ring
local d = route(M.conv, {}, groups, {})
d.overflow = M.ring
return unsent()
