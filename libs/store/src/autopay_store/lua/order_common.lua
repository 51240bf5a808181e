-- Functions shared by the order book's scripts (prepended to each).
local function order_key(prefix, id) return prefix .. 'order:' .. id end

local function hold_active(prefix, id, now)
  local st = redis.call('HMGET', order_key(prefix, id), 'status', 'hold_until')
  if not st[1] then return false end
  if st[1] == 'waiting' then return true end
  return tonumber(st[2]) > now
end

local function split(s)
  local out = {}
  if s then for id in string.gmatch(s, '%S+') do out[#out + 1] = id end end
  return out
end

-- drop holds whose quarantine is over (bounded work per call)
local function prune(holds, releases, prefix, now)
  local due = redis.call('ZRANGEBYSCORE', releases, '-inf', now, 'LIMIT', 0, 50)
  for _, amount in ipairs(due) do
    local keep = {}
    for _, id in ipairs(split(redis.call('HGET', holds, amount))) do
      if hold_active(prefix, id, now) then keep[#keep + 1] = id end
    end
    if #keep == 0 then
      redis.call('HDEL', holds, amount)
    else
      redis.call('HSET', holds, amount, table.concat(keep, ' '))
    end
    redis.call('ZREM', releases, amount)
  end
end

local function active_holder(holds, prefix, amount, now)
  for _, id in ipairs(split(redis.call('HGET', holds, amount))) do
    if hold_active(prefix, id, now) then return id end
  end
  return false
end

-- end an order: status, end time, quarantine, long TTL on its data
local function finish(prefix, id, amount, status, now, q, ttl, releases)
  local k = order_key(prefix, id)
  local hold_until = now + q
  redis.call('HSET', k, 'status', status, 'ended', now, 'hold_until', hold_until)
  local cur = redis.call('ZSCORE', releases, amount)
  if (not cur) or tonumber(cur) < hold_until then
    redis.call('ZADD', releases, hold_until, amount)
  end
  redis.call('EXPIRE', k, ttl)
end
