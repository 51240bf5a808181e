-- KEYS: the Idempotency-Key record. ARGV: the pending record, its TTL (s), now (s), the lease
-- of a bound claim (s), the caller's fingerprint.
-- Returns the stored record when there is one; else stores the pending one and returns false.
-- A pending claim bound to a resource (`order_id`) whose lease has run out belongs to a call
-- that died after binding it: the first caller of the same request to see that takes it over
-- (its `at` becomes now, so a concurrent caller sees it pending) and gets the record with
-- `taken_over` set.
local existing = redis.call('GET', KEYS[1])
if existing then
  local record = cjson.decode(existing)
  local now = tonumber(ARGV[3])
  local stale = (now - (record.at or 0)) >= tonumber(ARGV[4])
  if record.state == 'pending' and record.fp == ARGV[5] and record.order_id and stale then
    record.at = now
    redis.call('SET', KEYS[1], cjson.encode(record), 'KEEPTTL')
    record.taken_over = true
    return cjson.encode(record)
  end
  return existing
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return false
