#!lua flags=no-writes
-- One skill group as the supervisor board shows it, read-only: its agents by status, the used and effective slots
-- of those not offline (occupancy), and per channel the oldest enqueue time at the head of its queue (as
-- queue_stats reads it).
-- KEYS[1 .. agent_count]: the group's agent hashes; the KEYS after them: the conversations at its queue heads,
--   channel after channel (CHANNELS order), ARGV[2 ..] of them each.
-- ARGV[1]: agent_count; ARGV[2 ..]: how many head conversations each channel has.
-- Returns {oldest enqueued_ms per channel (0: none) ..., available, busy, away, wrap_up, offline, used slots,
--   effective slots}.
local agent_count = tonumber(ARGV[1])
local head_counts = {}
for c = 2, #ARGV do head_counts[#head_counts + 1] = tonumber(ARGV[c]) end

local order = {'available', 'busy', 'away', 'wrap_up', 'offline'}
local statuses = {available = 0, busy = 0, away = 0, wrap_up = 0, offline = 0}
local used, slots = 0, 0
for i = 1, agent_count do
  local a = redis.call('HMGET', KEYS[i], 'status', 'multiplier',
    'cap:chat', 'cap:email', 'cap:phone', 'used:chat', 'used:email', 'used:phone')
  local status = a[1] or 'offline'
  if statuses[status] == nil then status = 'offline' end
  statuses[status] = statuses[status] + 1
  if status ~= 'offline' then
    local mult = tonumber(a[2]) or 1
    if mult <= 0 then mult = 1 end
    for j = 3, 5 do slots = slots + math.floor((tonumber(a[j]) or 0) * mult) end
    for j = 6, 8 do used = used + (tonumber(a[j]) or 0) end
  end
end
local out = {}
append_oldest_per_channel(KEYS, head_counts, agent_count, out)
for _, name in ipairs(order) do out[#out + 1] = statuses[name] end
out[#out + 1] = used
out[#out + 1] = slots
return out
