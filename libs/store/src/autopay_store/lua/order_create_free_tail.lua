-- KEYS: holds, releases. ARGV: prefix, order_id, order_json, created, expires, now, quarantine,
-- then the candidate amounts in order of preference.
-- (order_common.lua is prepended)
local prefix, id = ARGV[1], ARGV[2]
local now, q = tonumber(ARGV[6]), tonumber(ARGV[7])
local k = order_key(prefix, id)
prune(KEYS[1], KEYS[2], prefix, now)
if redis.call('EXISTS', k) == 1 then return {'exists'} end
for i = 8, #ARGV do
  local amount = ARGV[i]
  if not active_holder(KEYS[1], prefix, amount, now) then
    redis.call('HSET', k, 'order', ARGV[3], 'status', 'waiting', 'amount', amount,
      'created', ARGV[4], 'expires', ARGV[5], 'hold_until', tonumber(ARGV[5]) + q)
    redis.call('HSET', KEYS[1], amount, id)
    redis.call('ZREM', KEYS[2], amount)
    return {'ok', amount}
  end
end
return {'none'}
