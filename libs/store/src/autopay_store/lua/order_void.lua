-- KEYS: order, holds. ARGV: prefix, order_id
-- (order_common.lua is prepended)
local st = redis.call('HMGET', KEYS[1], 'status', 'amount')
if not st[1] then return 'unknown' end
if st[1] ~= 'waiting' then return st[1] end
local keep = {}
for _, id in ipairs(split(redis.call('HGET', KEYS[2], st[2]))) do
  if id ~= ARGV[2] then keep[#keep + 1] = id end
end
if #keep == 0 then
  redis.call('HDEL', KEYS[2], st[2])
else
  redis.call('HSET', KEYS[2], st[2], table.concat(keep, ' '))
end
redis.call('DEL', KEYS[1])
return 'ok'
