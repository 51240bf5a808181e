-- A merchant pays an order with a credit by hand (the credit matched no order by itself).
-- All keys are the card's (one hash tag): the order and the card's credit decisions.
-- KEYS[1]: the order, KEYS[2]: releases, KEYS[3]: credits (decisions), KEYS[4]: credits-seen.
-- ARGV[1]: the card's key prefix, ARGV[2]: order id, ARGV[3]: credit id, ARGV[4]: now (ms),
-- ARGV[5]: quarantine (ms), ARGV[6]: TTL of the ended order (s), ARGV[7]: key id.
-- The credit must not have paid an order, the order must be waiting or expired; then the order
-- is paid (manual, late when past its deadline) and the credit's decision becomes `matched`,
-- so a redelivered credit is a duplicate of this payment and can never pay another order.
local prior = redis.call('HGET', KEYS[3], ARGV[3])
if prior then
  local decided = cjson.decode(prior)
  if decided.kind == 'matched' then return {'credit_consumed', decided.order_id or ''} end
end
local st = redis.call('HMGET', KEYS[1], 'status', 'amount', 'expires')
if not st[1] then return {'unknown'} end
if st[1] ~= 'waiting' and st[1] ~= 'expired' then return {'order_' .. st[1]} end
local now, q, ttl = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local late = 0
if st[1] == 'expired' or now > tonumber(st[3]) then late = 1 end
local hold_until = now + q
redis.call('HSET', KEYS[1], 'paid_at', now, 'credit_id', ARGV[3], 'late', late, 'manual', 1,
  'matched_by', ARGV[7], 'status', 'paid', 'ended', now, 'hold_until', hold_until)
local cur = redis.call('ZSCORE', KEYS[2], st[2])
if (not cur) or tonumber(cur) < hold_until then redis.call('ZADD', KEYS[2], hold_until, st[2]) end
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('HSET', KEYS[3], ARGV[3],
  cjson.encode({kind = 'matched', order_id = ARGV[2], manual = true}))
redis.call('ZADD', KEYS[4], now, ARGV[3])
return {'ok', redis.call('HGETALL', KEYS[1])}
