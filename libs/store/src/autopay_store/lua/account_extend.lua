-- Extend a merchant's subscription by one paid order, at most once per order id.
-- KEYS[1] the merchant's record (hash), KEYS[2] the set of order ids applied to it (same slot).
-- ARGV: order_id, now (epoch s), period (s), the tariff's max_payments, tariff_name,
--       rate_per_s, rate_burst.
-- The new period starts at the current expiry while the subscription is active, else now; the
-- allowance is what is left of an active one plus the tariff's, with payments_used back at 0
-- (counted from now on: usage_since).
-- Returns 'extended', 'applied' (this order id extended it before: nothing changed) or
-- 'missing' (no such merchant).
if redis.call('EXISTS', KEYS[1]) == 0 then return 'missing' end
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then return 'applied' end
local now = tonumber(ARGV[2])
local expires = tonumber(redis.call('HGET', KEYS[1], 'expires_at') or '0')
local start = now
local remaining = 0
if expires > now then
  start = expires
  local max = tonumber(redis.call('HGET', KEYS[1], 'max_payments') or '0')
  local used = tonumber(redis.call('HGET', KEYS[1], 'payments_used') or '0')
  remaining = math.max(0, max - used)
end
redis.call('HSET', KEYS[1],
  'expires_at', string.format('%.6f', start + tonumber(ARGV[3])),
  'max_payments', string.format('%d', remaining + tonumber(ARGV[4])),
  'payments_used', '0',
  'usage_since', ARGV[2],
  'tariff_name', ARGV[5],
  'rate_per_s', ARGV[6],
  'rate_burst', ARGV[7])
redis.call('SADD', KEYS[2], ARGV[1])
return 'extended'
