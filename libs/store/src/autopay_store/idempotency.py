"""`Idempotency-Key` records in Redis, per merchant (the gateway's POST calls).

A first request claims the key (`pending`, short TTL so a crashed request frees it); its final
answer is stored for `ttl_s` (24 h) and replayed for the same key and the same request; the
same key with another request is refused. What "the same request" is, is the caller's
fingerprint (`fp`): an opaque string here.

Key: `Keys.idempotency(merchant_id, sha256(key))` = `<prefix>:merchant:<id>:idem:<digest>`, a
string holding the JSON record `{"fp", "state": "pending"|"done", "status", "body"}`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import orjson
import redis.asyncio as aioredis

from autopay_store import scripts
from autopay_store.keys import Keys

PENDING_TTL_S = 60


@dataclass(frozen=True)
class StoredResponse:
    status: int
    body: bytes


@dataclass(frozen=True)
class Claim:
    """Outcome of claiming a key: `new`, `replay` (with the response), `mismatch`, `pending`."""

    outcome: str
    response: StoredResponse | None = None


class IdempotencyStore:
    def __init__(self, redis: aioredis.Redis, keys: Keys, ttl_s: int) -> None:
        self.redis = redis
        self.keys = keys
        self.ttl_s = ttl_s
        self._claim = scripts.register(redis, "idempotency_claim")

    def _key(self, merchant_id: str, idempotency_key: str) -> str:
        digest = hashlib.sha256(idempotency_key.encode()).hexdigest()
        return self.keys.idempotency(merchant_id, digest)

    async def claim(self, merchant_id: str, idempotency_key: str, fp: str) -> Claim:
        pending = orjson.dumps({"fp": fp, "state": "pending"})
        existing = await self._claim(
            keys=[self._key(merchant_id, idempotency_key)], args=[pending, PENDING_TTL_S]
        )
        if not existing:
            return Claim("new")
        record = orjson.loads(existing)
        if record["fp"] != fp:
            return Claim("mismatch")
        if record["state"] != "done":
            return Claim("pending")
        return Claim("replay", StoredResponse(record["status"], record["body"].encode()))

    async def complete(
        self, merchant_id: str, idempotency_key: str, fp: str, response: StoredResponse
    ) -> None:
        record = {"fp": fp, "state": "done", "status": response.status}
        record["body"] = response.body.decode()
        await self.redis.set(
            self._key(merchant_id, idempotency_key), orjson.dumps(record), ex=self.ttl_s
        )

    async def release(self, merchant_id: str, idempotency_key: str) -> None:
        """Forget a claim whose request did not complete (5xx, 429), so a retry runs again."""
        await self.redis.delete(self._key(merchant_id, idempotency_key))
