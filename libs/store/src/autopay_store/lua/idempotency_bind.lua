-- KEYS: the Idempotency-Key record. ARGV: the caller's fingerprint, the resource id (order id),
-- now (s), the record's TTL (s).
-- Binds a pending claim to the resource its call is about to create, for as long as a finished
-- answer is kept: if the call dies now, a retry finds the resource instead of creating another.
-- Returns 'bound', or 'lost' when the claim is no longer this call's (answered, or another
-- request's); a claim that expired meanwhile is taken again.
local existing = redis.call('GET', KEYS[1])
if existing then
  local record = cjson.decode(existing)
  if record.state ~= 'pending' or record.fp ~= ARGV[1] then return 'lost' end
end
local bound = {fp = ARGV[1], state = 'pending', at = tonumber(ARGV[3]), order_id = ARGV[2]}
redis.call('SET', KEYS[1], cjson.encode(bound), 'EX', ARGV[4])
return 'bound'
