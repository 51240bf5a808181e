-- KEYS: holds, releases, credits, credits-seen.
-- ARGV: prefix, credit_id, amount, currency, bank minute, now, quarantine, lead, ttl, retention
-- (order_common.lua is prepended)
local prefix, credit_id, amount = ARGV[1], ARGV[2], ARGV[3]
local bank, now = tonumber(ARGV[5]), tonumber(ARGV[6])
local q, lead, ttl, retention = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9]),
  tonumber(ARGV[10])

local prior = redis.call('HGET', KEYS[3], credit_id)
if prior then
  local first = cjson.decode(prior)
  local rec = {}
  if first.order_id then rec = redis.call('HGETALL', order_key(prefix, first.order_id)) end
  return {'duplicate', prior, rec}
end

prune(KEYS[1], KEYS[2], prefix, now)
local old = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now - retention, 'LIMIT', 0, 50)
for _, cid in ipairs(old) do
  redis.call('HDEL', KEYS[3], cid)
  redis.call('ZREM', KEYS[4], cid)
end

local outcome
if ARGV[4] ~= 'UZS' then
  outcome = {kind = 'unmatched', reason = 'currency ' .. ARGV[4] .. ' is not UZS'}
else
  local candidates, reason = {}, 'no order holds this amount on this card'
  for _, id in ipairs(split(redis.call('HGET', KEYS[1], amount))) do
    local o = redis.call('HMGET', order_key(prefix, id), 'status', 'created', 'expires',
      'hold_until')
    local status = o[1]
    if status == 'waiting' or (status == 'expired' and tonumber(o[4]) > now) then
      -- the bank minute [bank, bank + 60 s) must overlap [created - lead, expires]
      if bank <= tonumber(o[3]) and bank + 60000 > tonumber(o[2]) - lead then
        candidates[#candidates + 1] = id
      else
        reason = 'bank time outside the order window'
      end
    elseif status then
      reason = 'the order holding this amount is ' .. status
    end
  end
  if #candidates == 1 then
    local id = candidates[1]
    local k = order_key(prefix, id)
    local late = 0
    local st = redis.call('HMGET', k, 'status', 'expires')
    if st[1] == 'expired' or now > tonumber(st[2]) then late = 1 end
    redis.call('HSET', k, 'paid_at', now, 'credit_id', credit_id, 'late', late)
    finish(prefix, id, amount, 'paid', now, q, ttl, KEYS[2])
    outcome = {kind = 'matched', order_id = id}
  elseif #candidates > 1 then
    outcome = {kind = 'ambiguous', candidates = candidates}
  else
    outcome = {kind = 'unmatched', reason = reason}
  end
end
local encoded = cjson.encode(outcome)
redis.call('HSET', KEYS[3], credit_id, encoded)
redis.call('ZADD', KEYS[4], now, credit_id)
local rec = {}
if outcome.order_id then rec = redis.call('HGETALL', order_key(prefix, outcome.order_id)) end
return {outcome.kind, encoded, rec}
