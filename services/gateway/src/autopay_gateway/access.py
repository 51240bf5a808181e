"""Use case: who is calling. The key check (401, failed attempts throttled per client
address), the key's rate limit (429) and the subscription check (403), in the order of checks;
`api.py` runs the first two as a FastAPI dependency of every route."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

from autopay_gateway.messages import ApiError
from autopay_gateway.settings import GatewaySettings
from autopay_runtime.cache import MISSING, TtlCache
from autopay_store.accounts import Accounts, KeyHolder, Merchant, hash_api_key
from autopay_store.ratelimit import RateLimiter

BOT_ACTOR_PREFIX = "merchant-bot:"


@dataclass(frozen=True)
class Caller:
    """An authenticated request: the merchant, which of its keys (for the rate limit) and
    through what it came: `api` (a live or test key) or `bot` (the merchant bot's key)."""

    merchant: Merchant
    key_id: str
    via: str = "api"

    @property
    def actor(self) -> str:
        """Who did it, for audit records (`matched_by`, `dismissed_by`): the key id, prefixed
        `merchant-bot:` for the merchant bot's key."""
        return BOT_ACTOR_PREFIX + self.key_id if self.via == "bot" else self.key_id


class Access:
    def __init__(self, settings: GatewaySettings, accounts: Accounts, limiter: RateLimiter) -> None:
        self.settings = settings
        self.accounts = accounts
        self.limiter = limiter
        self._merchants: TtlCache[str, KeyHolder | None] = TtlCache(settings.auth_cache_seconds)

    def forget_merchants(self) -> None:
        """Drop every cached merchant (its settings, subscription or keys changed)."""
        self._merchants.clear()

    async def authenticate(self, api_key: str | None, client_address: str) -> Caller:
        """The caller of a valid key. A missing or wrong key is 401, and is counted against the
        client's address: past `failed_auth_burst` failures (refilled at `failed_auth_per_s`)
        that address gets 429 instead, so keys cannot be guessed at speed. Only valid keys
        enter the cache, so wrong ones can neither fill it nor push valid ones out."""
        holder = None
        key_hash = None
        if api_key:
            key_hash = hash_api_key(api_key)
            holder = self._merchants.get(key_hash)
            if holder is MISSING:
                holder = await self.accounts.identify(api_key)
                if holder is not None:
                    self._merchants.put(key_hash, holder)
        if holder is None or key_hash is None:
            await self._count_failed_auth(client_address)
            raise ApiError(401, "unauthorized")
        assert isinstance(holder, KeyHolder)
        return Caller(holder.merchant, key_hash[:32], "bot" if holder.mode == "bot" else "api")

    async def _count_failed_auth(self, client_address: str) -> None:
        wait = await self.limiter.take(
            f"auth-failures:{client_address}",
            self.settings.failed_auth_per_s,
            self.settings.failed_auth_burst,
            time.time(),
        )
        if wait > 0:
            retry_after = str(max(1, int(wait + 0.999)))
            raise ApiError(429, "rate_limited", headers={"Retry-After": retry_after})

    def require_subscription(self, merchant: Merchant, now: datetime) -> None:
        """403 before any parameter is looked at (the order of checks): an inactive or used-up
        subscription, as the merchant was read at authentication (at most `auth_cache_seconds`
        old). The atomic payment slot taken at create stays the authority."""
        if not merchant.active(now):
            raise ApiError(403, "no_subscription")
        if merchant.payments_used >= merchant.max_payments:
            raise ApiError(403, "limit_reached")

    async def throttle(self, caller: Caller) -> None:
        merchant = caller.merchant
        wait = await self.limiter.take(
            caller.key_id, merchant.rate_per_s, merchant.rate_burst, time.time()
        )
        if wait > 0:
            retry_after = str(max(1, int(wait + 0.999)))
            raise ApiError(429, "rate_limited", headers={"Retry-After": retry_after})
