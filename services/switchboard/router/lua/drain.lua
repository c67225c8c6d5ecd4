-- Drain the queues for agents whose capacity may have grown (became available, capacity raised, sweep).
-- ARGV[2]: JSON list of agent ids.
for _, agent in ipairs(cjson.decode(ARGV[2])) do drain(agent) end
return unsent()
