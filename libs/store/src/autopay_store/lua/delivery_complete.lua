if redis.call('HGET', KEYS[1], 'lease') ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], 'lease')
if ARGV[3] == 'defer' then
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
  return 1
end
redis.call('HSET', KEYS[1], 'attempts', ARGV[5], 'last_status', ARGV[8], 'last_error', ARGV[9],
           'last_attempt_at', ARGV[10])
if ARGV[3] == 'retry' then
  redis.call('HSET', KEYS[1], 'state', 'pending', 'next_attempt_at', ARGV[4])
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
else
  redis.call('HSET', KEYS[1], 'state', ARGV[3])
  redis.call('HDEL', KEYS[1], 'next_attempt_at')
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('EXPIRE', KEYS[1], ARGV[7])
end
redis.call('RPUSH', KEYS[3], ARGV[6])
redis.call('LTRIM', KEYS[3], -tonumber(ARGV[11]), -1)
redis.call('EXPIRE', KEYS[3], ARGV[7])
return 1
