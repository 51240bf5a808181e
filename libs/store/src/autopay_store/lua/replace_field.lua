-- Replace one hash field only if it still holds the value it was read with.
-- KEYS[1]: the hash. ARGV[1]: the field, ARGV[2]: the value read, ARGV[3]: the new value.
-- Returns 1 when replaced, 0 when the field changed meanwhile (the newer write wins).
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  return 1
end
return 0
