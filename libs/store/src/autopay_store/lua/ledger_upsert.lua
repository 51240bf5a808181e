-- Write one transaction record of a merchant's ledger (all keys share the merchant's tag).
-- KEYS[1]: the record, KEYS[2]: the index of all records, KEYS[3..]: one index per status.
-- ARGV[1]: record JSON, ARGV[2]: its status, ARGV[3]: score (received, ms), ARGV[4]: id,
-- ARGV[5]: TTL (s), ARGV[6]: oldest score kept in the indexes.
-- A matched record is final: a later unmatched/ambiguous/late copy (a redelivery, a replay)
-- does not undo it. The merchant's dismissal survives any rewrite.
local function present(v) return v ~= nil and v ~= cjson.null end
local new = cjson.decode(ARGV[1])
local raw = redis.call('GET', KEYS[1])
if raw then
  local old = cjson.decode(raw)
  if old.status == 'matched' and new.status ~= 'matched' then return 'kept' end
  if present(old.dismissed_at) and not present(new.dismissed_at) then
    new.dismissed_at = old.dismissed_at
    new.dismissed_by = old.dismissed_by
  end
  for i = 3, #KEYS do redis.call('ZREM', KEYS[i], ARGV[4]) end
end
redis.call('SET', KEYS[1], cjson.encode(new), 'EX', tonumber(ARGV[5]))
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[6])
for i = 3, #KEYS do
  if KEYS[i]:sub(-#ARGV[2] - 1) == ':' .. ARGV[2] then redis.call('ZADD', KEYS[i], ARGV[3], ARGV[4]) end
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', '(' .. ARGV[6])
end
return raw and 'updated' or 'created'
