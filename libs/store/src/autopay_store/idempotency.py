"""`Idempotency-Key` records in Redis, per merchant (the gateway's POST calls).

A first request claims the key (`pending`, short TTL so a crashed request frees it); its final
answer is stored for `ttl_s` (24 h) and replayed for the same key and the same request; the
same key with another request is refused. What "the same request" is, is the caller's
fingerprint (`fp`): an opaque string here.

A call that creates something (an order) binds its claim to the new resource's id before it
writes it (`bind`): the claim then lasts as long as an answer would, and a retry after the
call died (a killed process) takes the claim over once its lease (`PENDING_TTL_S`) is over
(`taken_over`, with the id) and answers with that resource instead of creating another.

Key: `Keys.idempotency(merchant_id, sha256(key))` = `<prefix>:merchant:<id>:idem:<digest>`, a
string holding the JSON record `{"fp", "state": "pending"|"done", "at", "order_id", "status",
"body"}`.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
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
class IdempotencyClaim:
    """Outcome of claiming a key: `new`, `replay` (with the response), `mismatch`, `pending`,
    or `taken_over` (with the `order_id` the dead call had bound)."""

    outcome: str
    response: StoredResponse | None = None
    order_id: str | None = None


class ClaimLost(Exception):
    """`bind` found the key answered or claimed by another request."""


class IdempotencyStore:
    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        ttl_s: int,
        pending_ttl_s: int = PENDING_TTL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.ttl_s = ttl_s
        self.pending_ttl_s = pending_ttl_s
        self.clock = clock
        self._claim = scripts.register(redis, "idempotency_claim")
        self._bind = scripts.register(redis, "idempotency_bind")
        self._reopen = scripts.register(redis, "idempotency_reopen")

    def _key(self, merchant_id: str, idempotency_key: str) -> str:
        digest = hashlib.sha256(idempotency_key.encode()).hexdigest()
        return self.keys.idempotency(merchant_id, digest)

    async def claim(self, merchant_id: str, idempotency_key: str, fp: str) -> IdempotencyClaim:
        now = int(self.clock())
        pending = orjson.dumps({"fp": fp, "state": "pending", "at": now})
        existing = await self._claim(
            keys=[self._key(merchant_id, idempotency_key)],
            args=[pending, self.pending_ttl_s, now, self.pending_ttl_s, fp],
        )
        if not existing:
            return IdempotencyClaim("new")
        record = orjson.loads(existing)
        if record["fp"] != fp:
            return IdempotencyClaim("mismatch")
        if record.get("taken_over"):
            return IdempotencyClaim("taken_over", order_id=str(record["order_id"]))
        if record["state"] != "done":
            return IdempotencyClaim("pending")
        return IdempotencyClaim("replay", StoredResponse(record["status"], record["body"].encode()))

    async def bind(self, merchant_id: str, idempotency_key: str, fp: str, order_id: str) -> None:
        """Tie this call's pending claim to the order it is about to create (before the order
        is written). Raises `ClaimLost` when the claim is no longer this call's."""
        verdict = await self._bind(
            keys=[self._key(merchant_id, idempotency_key)],
            args=[fp, order_id, int(self.clock()), self.ttl_s],
        )
        if verdict != "bound":
            raise ClaimLost(idempotency_key)

    async def complete(
        self, merchant_id: str, idempotency_key: str, fp: str, response: StoredResponse
    ) -> None:
        record = {"fp": fp, "state": "done", "status": response.status}
        record["body"] = response.body.decode()
        await self.redis.set(
            self._key(merchant_id, idempotency_key), orjson.dumps(record), ex=self.ttl_s
        )

    async def reopen(self, merchant_id: str, idempotency_key: str, fp: str) -> str:
        """A call of this request failed: its claim bound to an order is handed to the next
        retry at once (which answers with that order if it was written); an unbound claim is
        released. Returns 'reopened', 'released' or 'kept'."""
        return await self._reopen(keys=[self._key(merchant_id, idempotency_key)], args=[fp])
