"""Tariffs: what a subscription gives (price, payment limit, duration, API rate limit).

One hash per tariff (`Keys.tariff(name)`) and a set of their names. A merchant on a tariff has
its name, payment limit and expiry on its record (`Accounts.set_subscription`) and the tariff's
rate limit (`Accounts.set_rate_limit`); changing a tariff later changes what the next
subscription on it gives, not the running ones. `extend_subscription` adds a period bought
through a paid order (the merchant bot's subscription purchase), once per order.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

import redis.asyncio as aioredis

from autopay_store.accounts import Accounts, Merchant
from autopay_store.journal import AccountJournal
from autopay_store.keys import Keys
from autopay_store.replies import text_hash, text_set


@dataclass(frozen=True)
class Tariff:
    name: str
    price_som: int
    max_payments: int
    days: int
    rate_per_s: float = 20.0
    rate_burst: int = 40

    def __post_init__(self) -> None:
        if not self.name.strip() or len(self.name) > 64:
            raise ValueError("a tariff needs a name of at most 64 characters")
        if self.price_som < 0 or self.max_payments < 1 or self.days < 1:
            raise ValueError("price must be >= 0, payments and days >= 1")
        if self.rate_per_s <= 0 or self.rate_burst < 1:
            raise ValueError("rate must be positive and burst at least 1")


class Tariffs:
    def __init__(
        self, redis: aioredis.Redis, keys: Keys, journal: AccountJournal | None = None
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.journal = journal

    async def save(self, tariff: Tariff) -> Tariff:
        """Create the tariff, or replace the one of that name."""
        # Two Cluster slots: the tariff first, then the list names it (a stop between leaves
        # a tariff nobody lists; saving it again lists it).
        await self.redis.hset(self.keys.tariff(tariff.name), mapping=asdict(tariff))  # type: ignore[arg-type]  # redis-py: invariant mapping key, see replies.py
        await self.redis.sadd(self.keys.tariffs, tariff.name)
        if self.journal is not None:
            await self.journal.record(self.keys.tariff(tariff.name), self.keys.tariffs)
        return tariff

    async def get(self, name: str) -> Tariff | None:
        data = text_hash(await self.redis.hgetall(self.keys.tariff(name)))
        if not data:
            return None
        return Tariff(
            name=data["name"],
            price_som=int(data["price_som"]),
            max_payments=int(data["max_payments"]),
            days=int(data["days"]),
            rate_per_s=float(data["rate_per_s"]),
            rate_burst=int(data["rate_burst"]),
        )

    async def all(self) -> list[Tariff]:
        names = sorted(text_set(await self.redis.smembers(self.keys.tariffs)))
        found = [await self.get(name) for name in names]
        return [t for t in found if t is not None]


async def put_on_tariff(
    accounts: Accounts, merchant_id: str, tariff: Tariff, now: datetime
) -> Merchant:
    """Start the merchant's subscription on `tariff` now: its name, payment limit, duration
    from now, and its API rate limit."""
    await accounts.set_subscription(
        merchant_id,
        tariff_name=tariff.name,
        max_payments=tariff.max_payments,
        days=tariff.days,
        now=now,
    )
    return await accounts.set_rate_limit(
        merchant_id, per_s=tariff.rate_per_s, burst=tariff.rate_burst
    )


async def extend_subscription(
    accounts: Accounts, merchant_id: str, tariff: Tariff, order_id: str, now: datetime
) -> tuple[Merchant, bool]:
    """Extend the merchant's subscription by one period of `tariff`, bought with the paid order
    `order_id`: from the current expiry while it is active, else from `now`; the allowance is
    what is left of an active subscription plus the tariff's payments (`payments_used` back at
    0); the tariff's name and rate limit apply. Atomic, and idempotent per order id: the same
    order applied again returns the current merchant and False. Raises `KeyError` for an
    unknown merchant, `SubscriptionOrderTaken` when the order extended another merchant."""
    return await accounts.extend_subscription(
        merchant_id,
        tariff_name=tariff.name,
        max_payments=tariff.max_payments,
        days=tariff.days,
        rate_per_s=tariff.rate_per_s,
        rate_burst=tariff.rate_burst,
        order_id=order_id,
        now=now,
    )
