"""Merchants, API keys, subscriptions, connected cards and webhook signing secrets.

API keys are stored only as SHA-256 hashes (they are long random tokens). App passwords and
webhook secrets must be recoverable, so they are encrypted with `SecretBox` (keys from the
environment, rotatable).

INTERFACE FIRST: the signatures below are the contract the gateway, the notifier and the admin
CLI code against.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import redis.asyncio as aioredis

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


class CardTaken(Exception):
    """The `(gmail, card_last4)` pair belongs to another merchant."""


class Accounts:
    def __init__(self, redis: aioredis.Redis, keys: Keys, secrets: SecretBox) -> None:
        self.redis = redis
        self.keys = keys
        self.secrets = secrets

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
        raise NotImplementedError

    async def authenticate(self, api_key: str) -> Merchant | None:
        raise NotImplementedError

    async def get_merchant(self, merchant_id: str) -> Merchant | None:
        raise NotImplementedError

    async def rotate_api_key(self, merchant_id: str) -> str:
        raise NotImplementedError

    async def set_subscription(
        self, merchant_id: str, *, tariff_name: str, max_payments: int, days: int, now: datetime
    ) -> Merchant:
        raise NotImplementedError

    async def use_payment(self, merchant_id: str, now: datetime) -> None:
        """Count one created payment, atomically. Raises `SubscriptionExhausted`."""
        raise NotImplementedError

    async def release_payment(self, merchant_id: str) -> None:
        """Give back a payment counted for an order that was voided before anyone saw it."""
        raise NotImplementedError

    async def add_card(
        self, merchant_id: str, card_last4: str, gmail: str, app_password: str | None = None
    ) -> Card:
        """Connect a card (idempotent for the same merchant). Raises `CardTaken`."""
        raise NotImplementedError

    async def remove_card(self, merchant_id: str, card_id: int) -> Card | None:
        raise NotImplementedError

    async def list_cards(self, merchant_id: str) -> list[Card]:
        raise NotImplementedError

    async def find_card(self, merchant_id: str, card_last4: str, gmail: str) -> Card | None:
        raise NotImplementedError

    async def app_password(self, mailbox_id: str) -> str | None:
        raise NotImplementedError

    async def webhook_secrets(self, merchant_id: str, now: datetime) -> list[str]:
        """Secrets to sign with: the current one first, then the previous one while it is
        still within 24 h of its rotation."""
        raise NotImplementedError

    async def rotate_webhook_secret(self, merchant_id: str, now: datetime) -> str:
        raise NotImplementedError
