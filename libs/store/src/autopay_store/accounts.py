"""Merchants, API keys, subscriptions, connected cards and webhook signing secrets.

API keys are stored only as SHA-256 hashes (they are long random tokens). App passwords and
webhook secrets must be recoverable, so they are encrypted with `SecretBox` (keys from the
environment, rotatable).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets as _random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import redis.asyncio as aioredis

from autopay_contracts import mailbox_id_for
from autopay_contracts.ids import normalize_gmail
from autopay_store.keys import Keys
from autopay_store.secrets import SecretBox

LIVE_KEY_PREFIX = "ap_live_"
TEST_KEY_PREFIX = "ap_test_"


@dataclass(frozen=True)
class Merchant:
    merchant_id: str
    name: str
    tariff_name: str
    max_payments: int
    payments_used: int
    expires_at: datetime
    test_mode: bool = False
    rate_per_s: float = 20.0
    rate_burst: int = 40

    def active(self, now: datetime) -> bool:
        return now < self.expires_at


@dataclass(frozen=True)
class Card:
    card_id: int
    merchant_id: str
    card_last4: str
    gmail: str
    mailbox_id: str


@dataclass(frozen=True)
class NewMerchant:
    merchant: Merchant
    api_key: str
    webhook_secret: str


class SubscriptionExhausted(Exception):
    """No active subscription, or `payments_used >= max_payments` (HTTP 403)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason  # "inactive" | "limit"


class CardTaken(Exception):
    """The `(gmail, card_last4)` pair belongs to another merchant."""


SECRET_ROTATION_GRACE = timedelta(hours=24)

_USE_PAYMENT = """
local expires = tonumber(redis.call('HGET', KEYS[1], 'expires_at') or '0')
if expires <= tonumber(ARGV[1]) then return 'inactive' end
local used = tonumber(redis.call('HGET', KEYS[1], 'payments_used') or '0')
local max = tonumber(redis.call('HGET', KEYS[1], 'max_payments') or '0')
if used >= max then return 'limit' end
redis.call('HINCRBY', KEYS[1], 'payments_used', 1)
return 'ok'
"""


def hash_api_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def new_api_key(test_mode: bool) -> str:
    return (TEST_KEY_PREFIX if test_mode else LIVE_KEY_PREFIX) + _random.token_urlsafe(24)


def new_webhook_secret() -> str:
    return "whsec_" + base64.b64encode(_random.token_bytes(24)).decode()


def _epoch(at: datetime) -> float:
    return at.timestamp()


def _from_epoch(value: str | float) -> datetime:
    return datetime.fromtimestamp(float(value), tz=UTC)


class Accounts:
    def __init__(self, redis: aioredis.Redis, keys: Keys, secrets: SecretBox) -> None:
        self.redis = redis
        self.keys = keys
        self.secrets = secrets
        self._use_payment = redis.register_script(_USE_PAYMENT)

    # --- merchants ----------------------------------------------------------------------
    async def create_merchant(
        self,
        name: str,
        *,
        tariff_name: str = "Asosiy",
        max_payments: int = 100_000,
        days: int = 30,
        test_mode: bool = False,
        now: datetime,
    ) -> NewMerchant:
        merchant_id = str(await self.redis.incr(self.keys.global_key("seq", "merchant")))
        secret = new_webhook_secret()
        await self.redis.hset(
            self.keys.merchant(merchant_id),
            mapping={
                "name": name,
                "tariff_name": tariff_name,
                "max_payments": max_payments,
                "payments_used": 0,
                "expires_at": _epoch(now + timedelta(days=days)),
                "test_mode": int(test_mode),
                "rate_per_s": 20.0,
                "rate_burst": 40,
                "webhook_secret": self.secrets.encrypt(secret),
            },
        )
        api_key = await self.rotate_api_key(merchant_id, test=test_mode)
        merchant = await self.get_merchant(merchant_id)
        assert merchant is not None
        return NewMerchant(merchant, api_key, secret)

    async def get_merchant(self, merchant_id: str, *, test_key: bool = False) -> Merchant | None:
        data = await self.redis.hgetall(self.keys.merchant(merchant_id))
        if not data:
            return None
        return Merchant(
            merchant_id=merchant_id,
            name=data["name"],
            tariff_name=data["tariff_name"],
            max_payments=int(data["max_payments"]),
            payments_used=int(data["payments_used"]),
            expires_at=_from_epoch(data["expires_at"]),
            test_mode=bool(int(data.get("test_mode", 0))) or test_key,
            rate_per_s=float(data.get("rate_per_s", 20.0)),
            rate_burst=int(data.get("rate_burst", 40)),
        )

    async def authenticate(self, api_key: str) -> Merchant | None:
        if not api_key:
            return None
        found = await self.redis.hgetall(self.keys.api_key(hash_api_key(api_key)))
        if not found:
            return None
        return await self.get_merchant(found["merchant_id"], test_key=found.get("mode") == "test")

    async def rotate_api_key(self, merchant_id: str, *, test: bool = False) -> str:
        """Issue a new live (or test-mode) key; the previous key of that mode stops working."""
        mode = "test" if test else "live"
        api_key = new_api_key(test)
        key_hash = hash_api_key(api_key)
        field = f"api_key_hash_{mode}"
        previous = await self.redis.hget(self.keys.merchant(merchant_id), field)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                self.keys.api_key(key_hash), mapping={"merchant_id": merchant_id, "mode": mode}
            )
            pipe.hset(self.keys.merchant(merchant_id), field, key_hash)
            if previous:
                pipe.delete(self.keys.api_key(previous))
            await pipe.execute()
        return api_key

    async def set_subscription(
        self, merchant_id: str, *, tariff_name: str, max_payments: int, days: int, now: datetime
    ) -> Merchant:
        if not await self.redis.exists(self.keys.merchant(merchant_id)):
            raise KeyError(merchant_id)
        await self.redis.hset(
            self.keys.merchant(merchant_id),
            mapping={
                "tariff_name": tariff_name,
                "max_payments": max_payments,
                "expires_at": _epoch(now + timedelta(days=days)),
            },
        )
        merchant = await self.get_merchant(merchant_id)
        assert merchant is not None
        return merchant

    async def set_rate_limit(self, merchant_id: str, *, per_s: float, burst: int) -> Merchant:
        """The merchant's API rate limit (token bucket: `per_s` sustained, `burst` at once)."""
        if per_s <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        if not await self.redis.exists(self.keys.merchant(merchant_id)):
            raise KeyError(merchant_id)
        await self.redis.hset(
            self.keys.merchant(merchant_id), mapping={"rate_per_s": per_s, "rate_burst": burst}
        )
        merchant = await self.get_merchant(merchant_id)
        assert merchant is not None
        return merchant

    async def use_payment(self, merchant_id: str, now: datetime) -> None:
        verdict = await self._use_payment(
            keys=[self.keys.merchant(merchant_id)], args=[_epoch(now)]
        )
        if verdict != "ok":
            raise SubscriptionExhausted(verdict)

    async def release_payment(self, merchant_id: str) -> None:
        await self.redis.hincrby(self.keys.merchant(merchant_id), "payments_used", -1)

    # --- cards --------------------------------------------------------------------------
    def _owner_key(self, mailbox_id: str, card_last4: str) -> str:
        return self.keys.global_key("card-owner", mailbox_id, card_last4)

    def _password_key(self, mailbox_id: str) -> str:
        return self.keys.global_key("mailbox", mailbox_id, "app-password")

    async def add_card(
        self, merchant_id: str, card_last4: str, gmail: str, app_password: str | None = None
    ) -> Card:
        gmail = normalize_gmail(gmail)
        mailbox_id = mailbox_id_for(gmail)
        owner_key = self._owner_key(mailbox_id, card_last4)
        existing = await self.redis.get(owner_key)
        if existing is None:
            card_id = int(await self.redis.incr(self.keys.global_key("seq", "card")))
            if not await self.redis.set(owner_key, f"{merchant_id}:{card_id}", nx=True):
                existing = await self.redis.get(owner_key)
        if existing is not None:
            owner, _, existing_id = existing.partition(":")
            if owner != merchant_id:
                raise CardTaken(f"{card_last4} on this mailbox belongs to another merchant")
            card_id = int(existing_id)
        card = Card(card_id, merchant_id, card_last4, gmail, mailbox_id)
        await self.redis.hset(
            self.keys.merchant(merchant_id, "cards"), str(card_id), json.dumps(card.__dict__)
        )
        if app_password is not None:
            await self.redis.set(self._password_key(mailbox_id), self.secrets.encrypt(app_password))
        return card

    async def remove_card(self, merchant_id: str, card_id: int) -> Card | None:
        raw = await self.redis.hget(self.keys.merchant(merchant_id, "cards"), str(card_id))
        if raw is None:
            return None
        card = Card(**json.loads(raw))
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(self.keys.merchant(merchant_id, "cards"), str(card_id))
            pipe.delete(self._owner_key(card.mailbox_id, card.card_last4))
            await pipe.execute()
        return card

    async def list_cards(self, merchant_id: str) -> list[Card]:
        raw = await self.redis.hgetall(self.keys.merchant(merchant_id, "cards"))
        return sorted((Card(**json.loads(v)) for v in raw.values()), key=lambda c: c.card_id)

    async def find_card(self, merchant_id: str, card_last4: str, gmail: str) -> Card | None:
        mailbox_id = mailbox_id_for(gmail)
        owner = await self.redis.get(self._owner_key(mailbox_id, card_last4))
        if owner is None or owner.partition(":")[0] != merchant_id:
            return None
        raw = await self.redis.hget(
            self.keys.merchant(merchant_id, "cards"), owner.partition(":")[2]
        )
        return Card(**json.loads(raw)) if raw else None

    async def app_password(self, mailbox_id: str) -> str | None:
        token = await self.redis.get(self._password_key(mailbox_id))
        return self.secrets.decrypt(token) if token else None

    # --- webhook signing secrets ----------------------------------------------------------
    async def webhook_secrets(self, merchant_id: str, now: datetime) -> list[str]:
        current, previous, until = await self.redis.hmget(
            self.keys.merchant(merchant_id),
            "webhook_secret",
            "previous_webhook_secret",
            "previous_webhook_secret_until",
        )
        result = [self.secrets.decrypt(current)] if current else []
        if previous and until and float(until) > _epoch(now):
            result.append(self.secrets.decrypt(previous))
        return result

    async def rotate_webhook_secret(self, merchant_id: str, now: datetime) -> str:
        key = self.keys.merchant(merchant_id)
        current = await self.redis.hget(key, "webhook_secret")
        if current is None:
            raise KeyError(merchant_id)
        secret = new_webhook_secret()
        await self.redis.hset(
            key,
            mapping={
                "webhook_secret": self.secrets.encrypt(secret),
                "previous_webhook_secret": current,
                "previous_webhook_secret_until": _epoch(now + SECRET_ROTATION_GRACE),
            },
        )
        return secret
