"""The matcher reconciler's state in Redis: a watermark and a lease, per reconciled stream.

The watermark is a stream sequence up to which every received credit is known to have a
decision; a reconciler pass scans forward from it. It only ever moves up (several replicas, or
a pass that started from an older value, cannot move it back). Losing it (Redis lost) costs one
full scan of the stream, nothing else.

The lease makes one replica at a time run a pass; it expires on its own when that replica dies,
and is released only by its holder.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from autopay_store import scripts
from autopay_store.keys import Keys


class ReconcileState:
    def __init__(self, redis: aioredis.Redis, keys: Keys, stream: str) -> None:
        self.redis = redis
        self._watermark = keys.reconcile_watermark(stream)
        self._lease = keys.reconcile_lease(stream)
        self._raise = scripts.register(redis, "reconcile_raise")
        self._release = scripts.register(redis, "lease_release")

    async def watermark(self) -> int:
        """0 when nothing is known (every credit of the stream is to be checked)."""
        return int(await self.redis.get(self._watermark) or 0)

    async def raise_watermark(self, seq: int) -> int:
        """Move the watermark up to `seq` (never down); returns its value afterwards."""
        return int(await self._raise(keys=[self._watermark], args=[seq]))

    async def acquire(self, holder: str, ttl_s: float) -> bool:
        """Take the lease for `ttl_s` unless another holder has it."""
        return bool(await self.redis.set(self._lease, holder, nx=True, px=int(ttl_s * 1000)))

    async def release(self, holder: str) -> None:
        await self._release(keys=[self._lease], args=[holder])
