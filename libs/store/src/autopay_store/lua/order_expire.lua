-- KEYS: order, holds, releases. ARGV: prefix, order_id, now, quarantine, ttl
-- (order_common.lua is prepended)
local st = redis.call('HMGET', KEYS[1], 'status', 'amount', 'expires')
if not st[1] then return {'unknown'} end
local now = tonumber(ARGV[3])
if st[1] == 'waiting' then
  if now < tonumber(st[3]) then return {'not-due'} end
  finish(ARGV[1], ARGV[2], st[2], 'expired', now, tonumber(ARGV[4]), tonumber(ARGV[5]), KEYS[3])
  return {'ok'}
end
return {st[1]}
