-- KEYS: order, holds, releases. ARGV: prefix, order_id, ttl (s, 0: none), then the order hash
-- fields (flat).
-- (order_common.lua is prepended)
local prefix, id, ttl = ARGV[1], ARGV[2], ARGV[3]
local fields = {}
for i = 4, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(fields))
if tonumber(ttl) > 0 then redis.call('EXPIRE', KEYS[1], ttl) end
local amount = redis.call('HGET', KEYS[1], 'amount')
local ids = split(redis.call('HGET', KEYS[2], amount))
local present = false
for _, other in ipairs(ids) do if other == id then present = true end end
if not present then ids[#ids + 1] = id end
redis.call('HSET', KEYS[2], amount, table.concat(ids, ' '))
local st = redis.call('HMGET', KEYS[1], 'status', 'hold_until')
if st[1] ~= 'waiting' then
  local cur = redis.call('ZSCORE', KEYS[3], amount)
  if (not cur) or tonumber(cur) < tonumber(st[2]) then
    redis.call('ZADD', KEYS[3], st[2], amount)
  end
end
return 'ok'
