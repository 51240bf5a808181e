-- Take one use of an invite code.
-- KEYS[1] the invite (hash). ARGV[1] now (epoch s).
-- Returns 'ok' (one use taken), 'unknown', 'expired' or 'used' (no use left).
local found = redis.call('HMGET', KEYS[1], 'remaining', 'expires_at')
if not found[1] or not found[2] then return 'unknown' end
if tonumber(found[2]) <= tonumber(ARGV[1]) then return 'expired' end
if tonumber(found[1]) <= 0 then return 'used' end
redis.call('HINCRBY', KEYS[1], 'remaining', -1)
return 'ok'
