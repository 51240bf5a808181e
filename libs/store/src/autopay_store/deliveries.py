"""Webhook deliveries in Redis: the deliveries, a ZSET of due attempts, a log per order.

The notifier writes them (enqueue, claim, attempt outcomes); the gateway's webhook tools read
the log, make a delivery due again (redeliver, same `webhook-id`) and enqueue test events.

Keys (all under one hash tag `{wh}`, so every script touches a single Cluster slot):
- `<p>:{wh}:delivery:<delivery_id>` hash: merchant_id, order_id, order_event, url, body (the
  webhook payload, kept for retries and manual redelivery), state (pending | delivered |
  exhausted), attempts, last_status, last_error, last_attempt_at, next_attempt_at, lease.
  Finished deliveries expire after `retention_s`. No secret is ever stored here.
- `<p>:{wh}:due` ZSET delivery_id → epoch seconds when it is next due. While an attempt runs,
  the score is the lease expiry: a notifier that dies mid-attempt loses its lease and the
  delivery becomes due again for any replica.
- `<p>:{wh}:order:<order_id>` hash order_event → delivery_id (to find deliveries of an order).
- `<p>:{wh}:log:<order_id>` list of JSON attempt records (attempt, at, status_code, error,
  duration_ms, outcome, next_attempt_at), newest last, capped at `log_max` entries. Never a
  response body, never a secret.

Every transition checks the lease token, so an attempt whose lease was taken over cannot
overwrite the newer owner's outcome.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any, Literal

import redis.asyncio as aioredis

from autopay_store import scripts
from autopay_store.replies import text_hash


@dataclass(frozen=True)
class DeliveryKeys:
    prefix: str = "ap"

    @property
    def tag(self) -> str:
        return f"{self.prefix}:{{wh}}"

    @property
    def due(self) -> str:
        return f"{self.tag}:due"

    @property
    def delivery_prefix(self) -> str:
        return f"{self.tag}:delivery:"

    def delivery(self, delivery_id: str) -> str:
        return self.delivery_prefix + delivery_id

    def order(self, order_id: str) -> str:
        return f"{self.tag}:order:{order_id}"

    def log(self, order_id: str) -> str:
        return f"{self.tag}:log:{order_id}"


@dataclass(frozen=True)
class NewDelivery:
    delivery_id: str
    merchant_id: str
    order_id: str
    order_event: str
    url: str
    body: str
    created_at: float


@dataclass(frozen=True)
class DeliveryClaim:
    """A delivery this process holds a lease on, with what an attempt needs."""

    delivery_id: str
    token: str
    merchant_id: str
    order_id: str
    order_event: str
    url: str
    body: str
    attempts: int

    @property
    def attempt(self) -> int:
        """The 1-based number of the attempt this claim is for."""
        return self.attempts + 1


Finish = Literal["delivered", "retry", "exhausted"]


class DeliveryStore:
    def __init__(
        self,
        redis: aioredis.Redis,
        keys: DeliveryKeys,
        *,
        retention_s: int = 30 * 24 * 3600,
        log_max: int = 100,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.retention_s = retention_s
        self.log_max = log_max
        self._enqueue = scripts.register(redis, "delivery_enqueue")
        self._claim = scripts.register(redis, "delivery_claim")
        self._complete = scripts.register(redis, "delivery_complete")
        self._renew = scripts.register(redis, "delivery_renew")
        self._redeliver = scripts.register(redis, "delivery_redeliver")

    async def enqueue(
        self, d: NewDelivery, *, lease_until: float | None, due_at: float | None = None
    ) -> DeliveryClaim | None:
        """Record a new delivery due now (or at `due_at`). Returns a claim leased to the caller
        when `lease_until` is given (so it can attempt at once), None if the delivery already
        existed (a redelivered order event: nothing new to do)."""
        token = secrets.token_hex(8) if lease_until is not None else ""
        score = lease_until if lease_until is not None else due_at
        if score is None:
            score = d.created_at
        fields: dict[str, Any] = {
            "merchant_id": d.merchant_id,
            "order_id": d.order_id,
            "order_event": d.order_event,
            "url": d.url,
            "body": d.body,
            "created_at": d.created_at,
        }
        created = await self._enqueue(
            keys=[self.keys.delivery(d.delivery_id), self.keys.due, self.keys.order(d.order_id)],
            args=[
                d.delivery_id,
                score,
                token,
                d.order_event,
                self.retention_s,
                *(x for pair in fields.items() for x in pair),
            ],
        )
        if not created:
            return None
        return DeliveryClaim(
            d.delivery_id, token, d.merchant_id, d.order_id, d.order_event, d.url, d.body, 0
        )

    async def claim_due(self, now: float, limit: int, lease_until: float) -> list[DeliveryClaim]:
        rows = await self._claim(
            keys=[self.keys.due],
            args=[now, limit, lease_until, secrets.token_hex(8), self.keys.delivery_prefix],
        )
        return [
            DeliveryClaim(
                delivery_id=r[0],
                token=r[1],
                merchant_id=r[2],
                order_id=r[3],
                order_event=r[4],
                url=r[5],
                body=r[6],
                attempts=int(r[7] or 0),
            )
            for r in rows
        ]

    async def renew(self, claims: list[DeliveryClaim], until: float, chunk: int = 500) -> int:
        """Extend the leases this process still holds; returns how many were extended."""
        renewed = 0
        for start in range(0, len(claims), chunk):
            pairs = [x for c in claims[start : start + chunk] for x in (c.delivery_id, c.token)]
            renewed += int(
                await self._renew(
                    keys=[self.keys.due], args=[until, self.keys.delivery_prefix, *pairs]
                )
            )
        return renewed

    async def defer(self, claim: DeliveryClaim, until: float) -> bool:
        """Give the lease back without counting an attempt (the endpoint's lane was full)."""
        return bool(
            await self._complete(
                keys=self._finish_keys(claim),
                args=[claim.delivery_id, claim.token, "defer", until, 0, "", 0, "", "", 0, 0],
            )
        )

    async def finish_attempt(
        self,
        claim: DeliveryClaim,
        verdict: Finish,
        *,
        at: float,
        next_due: float | None,
        status_code: int | None,
        error: str | None,
        duration_s: float,
    ) -> bool:
        """Record one attempt's outcome; False if the lease was lost meanwhile."""
        entry = {
            "delivery_id": claim.delivery_id,
            "event": claim.order_event,
            "attempt": claim.attempt,
            "at": at,
            "status_code": status_code,
            "error": error,
            "duration_ms": round(duration_s * 1000, 1),
            "outcome": verdict,
            "next_attempt_at": next_due,
        }
        return bool(
            await self._complete(
                keys=self._finish_keys(claim),
                args=[
                    claim.delivery_id,
                    claim.token,
                    verdict,
                    next_due if next_due is not None else 0,
                    claim.attempt,
                    json.dumps(entry, separators=(",", ":")),
                    self.retention_s,
                    "" if status_code is None else status_code,
                    error or "",
                    at,
                    self.log_max,
                ],
            )
        )

    def _finish_keys(self, claim: DeliveryClaim) -> list[str]:
        return [
            self.keys.delivery(claim.delivery_id),
            self.keys.due,
            self.keys.log(claim.order_id),
        ]

    # --- webhook tools (the gateway) -------------------------------------------------------
    async def redeliver(self, delivery_id: str, now: float) -> str:
        """Make a delivery due now, keeping its `webhook-id`: 'ok', 'unknown', or 'busy' (an
        attempt holds it right now). A delivery that had exhausted its schedule gets one more
        attempt; a delivered one is sent again."""
        return await self._redeliver(
            keys=[self.keys.delivery(delivery_id), self.keys.due], args=[delivery_id, now]
        )

    async def order_deliveries(self, order_id: str) -> list[dict[str, Any]]:
        """Every delivery of an order, each with its attempts (oldest first)."""
        ids = text_hash(await self.redis.hgetall(self.keys.order(order_id)))
        log = await self.log(order_id)
        found = []
        for order_event, delivery_id in sorted(ids.items()):
            data = await self.delivery(delivery_id)
            if not data:
                continue
            data.pop("body", None)
            attempts = [a for a in log if a.get("delivery_id") == delivery_id]
            found.append(
                {"delivery_id": delivery_id, "order_event": order_event, **data, "log": attempts}
            )
        return found

    # --- reads (webhook tools, tests) ----------------------------------------------------
    async def delivery(self, delivery_id: str) -> dict[str, str]:
        data = text_hash(await self.redis.hgetall(self.keys.delivery(delivery_id)))
        data.pop("lease", None)
        return data

    async def log(self, order_id: str) -> list[dict[str, Any]]:
        return [json.loads(x) for x in await self.redis.lrange(self.keys.log(order_id), 0, -1)]

    async def pending_count(self) -> int:
        return int(await self.redis.zcard(self.keys.due))

    async def backlog(self) -> tuple[int, float | None]:
        """How many deliveries are scheduled (due now, later, or leased to an attempt), and
        the score of the earliest one: a past score is a delivery due and not yet claimed."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zcard(self.keys.due)
            pipe.zrange(self.keys.due, 0, 0, withscores=True)
            count, first = await pipe.execute()
        return int(count), (float(first[0][1]) if first else None)
