-- KEYS: the ZSET of live replicas. ARGV: this replica's id, the lease time (ms).
-- Drops the replicas whose heartbeat expired (Redis server time, so clock skew between hosts
-- does not matter), scores this one `now + lease`, and returns how many are live.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 4)
return redis.call('ZCARD', KEYS[1])
