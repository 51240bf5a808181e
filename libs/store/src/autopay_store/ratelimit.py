"""Per-API-key token buckets in Redis (one round trip; shared by every gateway replica).

Key: `Keys.rate_limit(key_id)` = `<prefix>:ratelimit:<key_id>`, a hash `t` (tokens left), `ts`
(when, epoch s), expiring once a full bucket would have refilled (`ratelimit_take.lua`).
"""

from __future__ import annotations

import redis.asyncio as aioredis

from autopay_store import scripts
from autopay_store.keys import Keys


class RateLimiter:
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.keys = keys
        self._take = scripts.register(redis, "ratelimit_take")

    async def take(self, key_id: str, rate_per_s: float, burst: int, now: float) -> float:
        """Take one token; returns 0 when allowed, else the seconds until one is available."""
        if rate_per_s <= 0:
            return 0.0
        wait = await self._take(
            keys=[self.keys.rate_limit(key_id)],
            args=[repr(now), repr(float(rate_per_s)), max(int(burst), 1)],
        )
        return float(wait)
