local expires = tonumber(redis.call('HGET', KEYS[1], 'expires_at') or '0')
if expires <= tonumber(ARGV[1]) then return 'inactive' end
local used = tonumber(redis.call('HGET', KEYS[1], 'payments_used') or '0')
local max = tonumber(redis.call('HGET', KEYS[1], 'max_payments') or '0')
if used >= max then return 'limit' end
redis.call('HINCRBY', KEYS[1], 'payments_used', 1)
return 'ok'
