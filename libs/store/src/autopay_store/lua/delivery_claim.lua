local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for i, id in ipairs(ids) do
  local key = ARGV[5] .. id
  if redis.call('EXISTS', key) == 0 then
    redis.call('ZREM', KEYS[1], id)
  else
    local token = ARGV[4] .. '-' .. i
    redis.call('ZADD', KEYS[1], ARGV[3], id)
    redis.call('HSET', key, 'lease', token)
    local f = redis.call('HMGET', key, 'merchant_id', 'order_id', 'order_event', 'url', 'body',
                         'attempts')
    table.insert(out, {id, token, f[1], f[2], f[3], f[4], f[5], f[6]})
  end
end
return out
