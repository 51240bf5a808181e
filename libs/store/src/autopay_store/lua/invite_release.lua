-- Give back one use of an invite code taken by a redemption whose work then failed.
-- KEYS[1] the invite (hash). Returns 1 when a use was given back, else 0.
local found = redis.call('HMGET', KEYS[1], 'remaining', 'uses')
if not found[1] or not found[2] then return 0 end
if tonumber(found[1]) >= tonumber(found[2]) then return 0 end
redis.call('HINCRBY', KEYS[1], 'remaining', 1)
return 1
