"""Merchants, API keys, subscriptions, connected cards and webhook signing secrets.

A mailbox belongs to the first merchant that connects a card on it (`autopay_store.mailboxes`);
cards, mailboxes and their ids always use the normalized address (`normalize_gmail`).

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
from typing import Literal, get_args

import redis.asyncio as aioredis

from autopay_contracts import is_card_last4, mailbox_id_for, normalize_gmail
from autopay_store import scripts
from autopay_store.journal import AccountJournal
from autopay_store.keys import Keys
from autopay_store.mailboxes import MailboxOwners, MailboxOwnership
from autopay_store.replies import maybe_text, maybe_texts, text_hash
from autopay_store.secrets import SecretBox

LIVE_KEY_PREFIX = "ap_live_"
TEST_KEY_PREFIX = "ap_test_"
BOT_KEY_PREFIX = "ap_bot_"

KeyMode = Literal["live", "test", "bot"]
"""A merchant has one key of each mode. `live` and `bot` keys both act in the merchant's live
world; a `bot` key is the merchant bot's (what it does is audited as done through the bot).
`test` keys act in the sandbox."""
KEY_MODES: tuple[KeyMode, ...] = get_args(KeyMode)
_KEY_PREFIXES = {"live": LIVE_KEY_PREFIX, "test": TEST_KEY_PREFIX, "bot": BOT_KEY_PREFIX}


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
    webhook_url: str | None = None
    """The merchant's default webhook URL, used by a payment created without one."""
    notify_events: tuple[str, ...] = ("paid",)
    """Which order events a payment created without `notify_events` is notified of."""

    def active(self, now: datetime) -> bool:
        return now < self.expires_at


@dataclass(frozen=True)
class KeyHolder:
    """Who a valid API key belongs to, and which of the merchant's keys it is."""

    merchant: Merchant
    mode: KeyMode


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


class SubscriptionOrderTaken(Exception):
    """The order id already extended another merchant's subscription."""


class CardTaken(Exception):
    """The `(gmail, card_last4)` pair belongs to another merchant."""


class MailboxTaken(Exception):
    """The mailbox (any spelling of its address) belongs to another merchant."""


SECRET_ROTATION_GRACE = timedelta(hours=24)


def hash_api_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def new_api_key(test_mode: bool = False, *, mode: KeyMode | None = None) -> str:
    """A fresh key of `mode` (else live, or test when `test_mode`): its prefix says the mode."""
    return _KEY_PREFIXES[mode or ("test" if test_mode else "live")] + _random.token_urlsafe(24)


def new_webhook_secret() -> str:
    return "whsec_" + base64.b64encode(_random.token_bytes(24)).decode()


def declared_aliases(aliases: tuple[str, ...] | list[str], gmail: str) -> tuple[str, ...]:
    """Aliases as stored: normalized, each once, without the mailbox's own address."""
    own = normalize_gmail(gmail)
    result: list[str] = []
    for alias in aliases:
        address = normalize_gmail(alias)
        if address != own and address not in result:
            result.append(address)
    return tuple(result)


def _epoch(at: datetime) -> float:
    return at.timestamp()


def _from_epoch(value: str | float) -> datetime:
    return datetime.fromtimestamp(float(value), tz=UTC)


class Accounts:
    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        secrets: SecretBox,
        journal: AccountJournal | None = None,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.secrets = secrets
        self.journal = journal
        """Where every change of an account is copied to survive a Redis loss (None: readers
        that change nothing, and tests of Redis alone)."""
        self._use_payment = scripts.register(redis, "account_use_payment")
        self._extend = scripts.register(redis, "account_extend")
        self.mailboxes = MailboxOwners(redis, keys)

    async def _record(self, *redis_keys: str) -> None:
        if self.journal is not None:
            await self.journal.record(*redis_keys)

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
        merchant_id = str(await self.redis.incr(self.keys.merchant_sequence))
        secret = new_webhook_secret()
        await self.redis.hset(
            self.keys.merchant(merchant_id),
            mapping={
                "name": name,
                "tariff_name": tariff_name,
                "max_payments": max_payments,
                "payments_used": 0,
                "usage_since": _epoch(now),
                "expires_at": _epoch(now + timedelta(days=days)),
                "test_mode": int(test_mode),
                "rate_per_s": 20.0,
                "rate_burst": 40,
                "webhook_secret": self.secrets.encrypt(secret),
            },
        )
        await self._record(self.keys.merchant_sequence, self.keys.merchant(merchant_id))
        api_key = await self.rotate_api_key(merchant_id, test=test_mode)
        merchant = await self.get_merchant(merchant_id)
        assert merchant is not None
        return NewMerchant(merchant, api_key, secret)

    async def get_merchant(self, merchant_id: str, *, test_key: bool = False) -> Merchant | None:
        data = text_hash(await self.redis.hgetall(self.keys.merchant(merchant_id)))
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
            webhook_url=data.get("webhook_url") or None,
            notify_events=tuple(json.loads(data.get("notify_events") or '["paid"]')),
        )

    async def authenticate(self, api_key: str) -> Merchant | None:
        holder = await self.identify(api_key)
        return holder.merchant if holder is not None else None

    async def identify(self, api_key: str) -> KeyHolder | None:
        """The merchant a key belongs to and the key's mode, or None for a wrong key. A test
        key's merchant is in test mode; a live or bot key's is in the merchant's own mode."""
        if not api_key:
            return None
        key_hash = hash_api_key(api_key)
        found = text_hash(await self.redis.hgetall(self.keys.api_key(key_hash)))
        if not found:
            return None
        mode = found.get("mode") or "live"
        mode = mode if mode in KEY_MODES else "live"
        # The merchant's record names its current key of each mode: an index entry it does not
        # name (a rotation cut short between its writes) opens nothing.
        current = await self.redis.hget(
            self.keys.merchant(found["merchant_id"]), f"api_key_hash_{mode}"
        )
        if current != key_hash:
            return None
        merchant = await self.get_merchant(found["merchant_id"], test_key=mode == "test")
        if merchant is None:
            return None
        return KeyHolder(merchant, mode)

    async def rotate_api_key(
        self, merchant_id: str, *, mode: KeyMode | None = None, test: bool = False
    ) -> str:
        """Issue a new key of `mode` (default: live, or test when `test`); the previous key of
        that mode stops working, the merchant's keys of the other modes are untouched."""
        mode = mode or ("test" if test else "live")
        if mode not in KEY_MODES:
            raise ValueError(f"unknown key mode {mode!r}")
        api_key = new_api_key(mode=mode)
        key_hash = hash_api_key(api_key)
        field = f"api_key_hash_{mode}"
        previous = maybe_text(await self.redis.hget(self.keys.merchant(merchant_id), field))
        # Three keys in three Cluster slots, so no transaction: written in an order where a
        # stop between any two leaves exactly one working key of the mode. The index entry
        # first (alone it opens nothing, see `identify`), then the record names the new key
        # (the old one stops working there), then the old entry goes.
        await self.redis.hset(
            self.keys.api_key(key_hash), mapping={"merchant_id": merchant_id, "mode": mode}
        )
        await self.redis.hset(self.keys.merchant(merchant_id), field, key_hash)
        if previous:
            await self.redis.delete(self.keys.api_key(previous))
        changed = [self.keys.api_key(key_hash), self.keys.merchant(merchant_id)]
        await self._record(*changed, *([self.keys.api_key(previous)] if previous else []))
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
        await self._record(self.keys.merchant(merchant_id))
        merchant = await self.get_merchant(merchant_id)
        assert merchant is not None
        return merchant

    async def extend_subscription(
        self,
        merchant_id: str,
        *,
        tariff_name: str,
        max_payments: int,
        days: int,
        rate_per_s: float,
        rate_burst: int,
        order_id: str,
        now: datetime,
    ) -> tuple[Merchant, bool]:
        """Extend the subscription by one paid order (`tariffs.extend_subscription`): the new
        period starts at the current expiry while the subscription is active, else `now`, and
        lasts `days`; the allowance becomes what an active one has left plus `max_payments`,
        with `payments_used` back at 0; the tariff's name and rate limit are set.

        Idempotent per `order_id`: applying it again changes nothing and returns
        `(merchant, False)`. An order id extends one merchant only: `SubscriptionOrderTaken`
        when it extended another one. `KeyError` when the merchant does not exist."""
        if not order_id or len(order_id) > 128:
            raise ValueError("an order id of 1..128 characters is needed")
        if max_payments < 1 or days < 1:
            raise ValueError("payments and days must be >= 1")
        record = self.keys.merchant(merchant_id)
        if not await self.redis.exists(record):
            raise KeyError(merchant_id)
        # The order's owner first (one key, set once): a retry after a crash between the two
        # steps finds its own claim and applies the extension then.
        claim = self.keys.subscription_order(order_id)
        if not await self.redis.set(claim, merchant_id, nx=True):
            owner = await self.redis.get(claim)
            if owner != merchant_id:
                raise SubscriptionOrderTaken(order_id)
        verdict = await self._extend(
            keys=[record, self.keys.subscription_orders(merchant_id)],
            args=[
                order_id,
                _epoch(now),
                days * 86_400,
                max_payments,
                tariff_name,
                rate_per_s,
                rate_burst,
            ],
        )
        if verdict == "missing":
            raise KeyError(merchant_id)
        await self._record(claim, record, self.keys.subscription_orders(merchant_id))
        merchant = await self.get_merchant(merchant_id)
        assert merchant is not None
        return merchant, verdict == "extended"

    async def set_rate_limit(self, merchant_id: str, *, per_s: float, burst: int) -> Merchant:
        """The merchant's API rate limit (token bucket: `per_s` sustained, `burst` at once)."""
        if per_s <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        if not await self.redis.exists(self.keys.merchant(merchant_id)):
            raise KeyError(merchant_id)
        await self.redis.hset(
            self.keys.merchant(merchant_id), mapping={"rate_per_s": per_s, "rate_burst": burst}
        )
        await self._record(self.keys.merchant(merchant_id))
        merchant = await self.get_merchant(merchant_id)
        assert merchant is not None
        return merchant

    async def set_settings(
        self, merchant_id: str, *, webhook_url: str | None, notify_events: tuple[str, ...]
    ) -> Merchant:
        """The merchant-wide defaults (`PUT /api/settings`): None removes the default URL."""
        key = self.keys.merchant(merchant_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            if webhook_url:
                pipe.hset(key, "webhook_url", webhook_url)
            else:
                pipe.hdel(key, "webhook_url")
            pipe.hset(key, "notify_events", json.dumps(list(notify_events)))
            await pipe.execute()
        await self._record(key)
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
    async def add_card(
        self,
        merchant_id: str,
        card_last4: str,
        gmail: str,
        app_password: str | None = None,
        aliases: tuple[str, ...] | None = None,
    ) -> Card:
        """Connect a card; the first merchant to connect a card on a mailbox owns the mailbox.

        Connecting it again (any spelling of the address) returns the same card. Raises
        `CardTaken` when the pair is another merchant's, `MailboxTaken` when the mailbox is.
        The password and `aliases` (normalized, None keeps the stored ones) are the owner's."""
        if not is_card_last4(card_last4):
            raise ValueError("card_last4 must be exactly four ASCII digits")
        gmail = normalize_gmail(gmail)
        mailbox_id = mailbox_id_for(gmail)
        verdict, card_id = await self.mailboxes.claim(
            mailbox_id,
            gmail,
            merchant_id,
            card_last4,
            password_token=self.secrets.encrypt(app_password) if app_password else None,
            aliases=None if aliases is None else declared_aliases(aliases, gmail),
        )
        if verdict == "card_taken":
            raise CardTaken(f"{card_last4} on this mailbox belongs to another merchant")
        if verdict == "mailbox_taken":
            raise MailboxTaken("this mailbox belongs to another merchant")
        assert card_id is not None
        card = Card(card_id, merchant_id, card_last4, gmail, mailbox_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(self.keys.card_owner(mailbox_id, card_last4), f"{merchant_id}:{card_id}")
            pipe.hset(
                self.keys.merchant_cards(merchant_id), str(card_id), json.dumps(card.__dict__)
            )
            await pipe.execute()
        await self._record(
            self.keys.card_sequence,
            self.keys.mailbox_owner(mailbox_id),
            self.keys.card_owner(mailbox_id, card_last4),
            self.keys.merchant_cards(merchant_id),
        )
        return card

    async def remove_card(self, merchant_id: str, card_id: int) -> Card | None:
        """Disconnect a card; removing the last card of a mailbox releases the mailbox (it is
        nobody's any more) and deletes its app password."""
        raw = await self.redis.hget(self.keys.merchant_cards(merchant_id), str(card_id))
        if raw is None:
            return None
        card = Card(**json.loads(raw))
        owner_key = self.keys.card_owner(card.mailbox_id, card.card_last4)
        if await self.redis.get(owner_key) == f"{merchant_id}:{card_id}":
            await self.redis.delete(owner_key)
        await self.redis.hdel(self.keys.merchant_cards(merchant_id), str(card_id))
        gmail = normalize_gmail(card.gmail)
        await self.mailboxes.release(mailbox_id_for(gmail), gmail, merchant_id, card.card_last4)
        await self._record(
            owner_key,
            self.keys.merchant_cards(merchant_id),
            self.keys.mailbox_owner(mailbox_id_for(gmail)),
            self.keys.mailbox_password(mailbox_id_for(gmail)),
        )
        return card

    async def list_cards(self, merchant_id: str) -> list[Card]:
        raw = await self.redis.hgetall(self.keys.merchant_cards(merchant_id))
        return sorted((Card(**json.loads(v)) for v in raw.values()), key=lambda c: c.card_id)

    async def find_card(self, merchant_id: str, card_last4: str, gmail: str) -> Card | None:
        mailbox_id = mailbox_id_for(gmail)
        owner = maybe_text(await self.redis.get(self.keys.card_owner(mailbox_id, card_last4)))
        if owner is None or owner.partition(":")[0] != merchant_id:
            return None
        raw = await self.redis.hget(self.keys.merchant_cards(merchant_id), owner.partition(":")[2])
        return Card(**json.loads(raw)) if raw else None

    async def mailbox(self, gmail: str) -> MailboxOwnership | None:
        """Who owns the mailbox of this address (any spelling), its cards and aliases."""
        gmail = normalize_gmail(gmail)
        return await self.mailboxes.current(mailbox_id_for(gmail), gmail)

    async def app_password(self, mailbox_id: str) -> str | None:
        record = await self.mailboxes.get(mailbox_id)
        token = record.password_token if record else None
        token = token or maybe_text(await self.redis.get(self.keys.mailbox_password(mailbox_id)))
        return self.secrets.decrypt(token) if token else None

    # --- webhook signing secrets ----------------------------------------------------------
    async def webhook_secrets(self, merchant_id: str, now: datetime) -> list[str]:
        current, previous, until = maybe_texts(
            await self.redis.hmget(
                self.keys.merchant(merchant_id),
                "webhook_secret",
                "previous_webhook_secret",
                "previous_webhook_secret_until",
            )
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
        await self._record(key)
        return secret
