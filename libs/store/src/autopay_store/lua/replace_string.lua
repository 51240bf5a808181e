-- Replace a string key only if it still holds the value it was read with (TTL kept).
-- KEYS[1]: the key. ARGV[1]: the value read, ARGV[2]: the new value.
-- Returns 1 when replaced, 0 when the key changed meanwhile (the newer write wins).
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
  return 1
end
return 0
