"""Per-API-key token bucket in Redis (one round trip; shared by every gateway replica)."""

from __future__ import annotations

import redis.asyncio as aioredis

from autopay_store.keys import Keys

_TAKE = """
local rate = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local now = tonumber(ARGV[1])
local state = redis.call('HMGET', KEYS[1], 't', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
local elapsed = now - ts
if elapsed < 0 then elapsed = 0 end
tokens = math.min(burst, tokens + elapsed * rate)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 't', tostring(tokens), 'ts', ARGV[1])
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return tostring(wait)
"""


class RateLimiter:
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.keys = keys
        self._take = redis.register_script(_TAKE)

    async def take(self, key_id: str, rate_per_s: float, burst: int, now: float) -> float:
        """Take one token; returns 0 when allowed, else the seconds until one is available."""
        if rate_per_s <= 0:
            return 0.0
        wait = await self._take(
            keys=[self.keys.global_key("ratelimit", key_id)],
            args=[repr(now), repr(float(rate_per_s)), max(int(burst), 1)],
        )
        return float(wait)
