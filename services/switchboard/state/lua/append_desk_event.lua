-- Append one DeskEvent to an agent's outbox (state.outbox.append_desk_event); returns the seq it got.
-- Needs the desk_append library.
local outbox, seq_key, notify = KEYS[1], KEYS[2], KEYS[3]
local agent_id, event = ARGV[1], ARGV[2]

return desk_append(outbox, seq_key, notify, agent_id, event)
