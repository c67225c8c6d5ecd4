-- Library: the oldest enqueue time of each channel's queue heads, shared by queue_stats and group_board.
-- `keys[first + 1 ..]` are the conversations at a group's queue heads, channel after channel (CHANNELS order);
-- `counts[c]` is how many of them channel c has. Appends each channel's oldest enqueued_ms (0: none) to `out`.
local function append_oldest_per_channel(keys, counts, first, out)
  local last = first
  for _, count in ipairs(counts) do
    local oldest = 0
    for i = last + 1, last + count do
      local at = tonumber(redis.call('HGET', keys[i], 'enqueued_ms'))
      if at and (oldest == 0 or at < oldest) then oldest = at end
    end
    last = last + count
    out[#out + 1] = oldest
  end
end
