-- KEYS: the order id sequence. ARGV: the lowest value it may have.
local cur = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local floor = tonumber(ARGV[1])
if cur < floor then redis.call('SET', KEYS[1], floor) return floor end
return cur
