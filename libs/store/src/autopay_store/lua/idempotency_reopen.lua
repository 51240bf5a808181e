-- KEYS: the Idempotency-Key record. ARGV: the caller's fingerprint.
-- A call failed (5xx, a dead dependency). A claim it had bound to an order (`order_id`) stays,
-- open at once to the next retry of the same request (`at` = 0): the order may have been
-- written, and the retry must answer with it rather than make another. Any other claim of this
-- request is removed, so the retry runs anew. Returns 'reopened', 'released' or 'kept' (the
-- record is an answer, or another request's).
local existing = redis.call('GET', KEYS[1])
if not existing then return 'released' end
local record = cjson.decode(existing)
if record.state ~= 'pending' or record.fp ~= ARGV[1] then return 'kept' end
if record.order_id then
  record.at = 0
  redis.call('SET', KEYS[1], cjson.encode(record), 'KEEPTTL')
  return 'reopened'
end
redis.call('DEL', KEYS[1])
return 'released'
