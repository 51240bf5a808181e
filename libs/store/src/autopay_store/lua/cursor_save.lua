-- KEYS: the mailbox's cursor hash, its lease. ARGV: uidvalidity, last uid, lease holder ('' for
-- no fencing). Moves the cursor only while the lease names that holder (0 when it does not),
-- and never backwards within one UIDVALIDITY (then 1, nothing written).
-- The two keys have no shared hash tag: see `scripts.MULTI_SLOT`.
if ARGV[3] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[3] then
  return 0
end
local current = redis.call('HMGET', KEYS[1], 'uidvalidity', 'last_uid')
if current[1] == ARGV[1] and tonumber(current[2] or '0') >= tonumber(ARGV[2]) then
  return 1
end
redis.call('HSET', KEYS[1], 'uidvalidity', ARGV[1], 'last_uid', ARGV[2])
return 1
