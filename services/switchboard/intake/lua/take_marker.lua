-- Take the idempotency marker of one provider message for a send: set it `pending` (with a TTL) when nobody holds
-- it. Returns 'taken', or the state someone else left: 'pending' (in flight now) or 'done' (accepted before).
-- One call instead of SET NX then GET: the state read is the one that refused the SET.
local marker = KEYS[1]
local pending_ttl_s = ARGV[1]

if redis.call('SET', marker, 'pending', 'NX', 'EX', pending_ttl_s) then
  return 'taken'
end
return redis.call('GET', marker)
