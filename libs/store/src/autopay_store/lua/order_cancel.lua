-- KEYS: order, holds, releases. ARGV: prefix, order_id, at, quarantine, ttl
-- (order_common.lua is prepended)
local st = redis.call('HMGET', KEYS[1], 'status', 'amount')
if not st[1] then return {'unknown'} end
if st[1] == 'waiting' then
  finish(ARGV[1], ARGV[2], st[2], 'cancelled', tonumber(ARGV[3]), tonumber(ARGV[4]),
    tonumber(ARGV[5]), KEYS[3])
  return {'ok'}
end
return {st[1]}
