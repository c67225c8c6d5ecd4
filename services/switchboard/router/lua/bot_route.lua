-- A conversation the bot held is routed after all (lookup failed, timed out, breaker open, no answer fits, or the
-- sweep found its deadline passed): the route plan (contract.BotRouteRequest) was made with its original arrival.
-- KEYS: as a route of inbound.lua (router/scripts.py), plus the tenant's bot holds and unsent decisions.
-- ARGV[1]: context; ARGV[2]: request JSON. A conversation no longer held under the token is left alone.
local context, request = ARGV[1], ARGV[2]
begin(context, KEYS)
local R = cjson.decode(request)
if not bot_still_holds(R.conv, R.token) then return '[]' end
redis.call('HSET', K('conv', R.conv), 'state', 'new')
redis.call('ZREM', T('bot_holds'), R.conv)
route(R.conv, R.route)
return unsent()
