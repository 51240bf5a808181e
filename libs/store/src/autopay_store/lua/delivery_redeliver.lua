-- Make a webhook delivery due again, keeping its id (the `webhook-id` receivers dedupe on).
-- KEYS[1]: the delivery, KEYS[2]: the due zset. ARGV[1]: delivery id, ARGV[2]: now (epoch s).
-- 'busy' while an attempt holds its lease: that attempt's outcome stands.
if redis.call('EXISTS', KEYS[1]) == 0 then return 'unknown' end
if redis.call('HEXISTS', KEYS[1], 'lease') == 1 then return 'busy' end
redis.call('HSET', KEYS[1], 'state', 'pending', 'next_attempt_at', ARGV[2])
redis.call('PERSIST', KEYS[1])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 'ok'
