-- Store a new invite code unless the code exists already.
-- KEYS[1] the invite (hash). ARGV: uses, expires_at (epoch s), created_at (epoch s),
-- when Redis may drop the record (epoch s, integer).
-- Returns 1 when stored, 0 when the code was taken (the caller draws another).
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1],
  'uses', ARGV[1], 'remaining', ARGV[1], 'expires_at', ARGV[2], 'created_at', ARGV[3])
redis.call('EXPIREAT', KEYS[1], ARGV[4])
return 1
