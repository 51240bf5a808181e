-- KEYS: the Idempotency-Key record. ARGV: the pending record, its TTL (s).
-- Returns the stored record when there is one; else stores the pending one and returns false.
local existing = redis.call('GET', KEYS[1])
if existing then return existing end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return false
