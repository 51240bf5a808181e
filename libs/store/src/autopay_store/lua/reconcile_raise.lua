-- KEYS: the watermark. ARGV: the new value. Sets it only upwards; returns the value it now has.
local cur = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local new = tonumber(ARGV[1])
if new > cur then redis.call('SET', KEYS[1], ARGV[1]) return new end
return cur
