-- KEYS: order, holds, releases.
-- ARGV: prefix, order_id, amount, order_json, created, expires, now, quarantine
-- (order_common.lua is prepended)
local prefix, id, amount = ARGV[1], ARGV[2], ARGV[3]
local now, q = tonumber(ARGV[7]), tonumber(ARGV[8])
prune(KEYS[2], KEYS[3], prefix, now)
if redis.call('EXISTS', KEYS[1]) == 1 then return {'exists'} end
local holder = active_holder(KEYS[2], prefix, amount, now)
if holder then return {'reserved', holder} end
redis.call('HSET', KEYS[1], 'order', ARGV[4], 'status', 'waiting', 'amount', amount,
  'created', ARGV[5], 'expires', ARGV[6], 'hold_until', tonumber(ARGV[6]) + q)
redis.call('HSET', KEYS[2], amount, id)
redis.call('ZREM', KEYS[3], amount)
return {'ok', amount}
