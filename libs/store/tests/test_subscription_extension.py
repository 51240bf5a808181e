"""A subscription extended by a paid order (real Redis): the period and allowance rule, once
per order id, one merchant per order id, one Cluster slot per script."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from redis.crc import key_slot

from autopay_store.accounts import Accounts, SubscriptionOrderTaken
from autopay_store.keys import Keys
from autopay_store.secrets import SecretBox
from autopay_store.tariffs import Tariff, extend_subscription

NOW = datetime(2026, 5, 16, 4, 0, tzinfo=UTC)
PRO = Tariff("Pro", price_som=99_000, max_payments=500, days=30, rate_per_s=50, rate_burst=90)


@pytest.fixture
def accounts(redis_client, redis_prefix) -> Accounts:
    return Accounts(redis_client, Keys(redis_prefix), SecretBox(SecretBox.generate_key()))


async def test_an_active_subscription_is_extended_from_its_expiry(accounts):
    new = await accounts.create_merchant("Shop", max_payments=100, days=10, now=NOW)
    mid = new.merchant.merchant_id
    for _ in range(30):
        await accounts.use_payment(mid, NOW)
    later = NOW + timedelta(days=4)
    merchant, extended = await extend_subscription(accounts, mid, PRO, "10001", later)
    assert extended
    assert merchant.expires_at == NOW + timedelta(days=10 + 30)
    assert (merchant.max_payments, merchant.payments_used) == (70 + 500, 0)
    assert (merchant.tariff_name, merchant.rate_per_s, merchant.rate_burst) == ("Pro", 50, 90)


async def test_an_expired_subscription_starts_again_now_without_leftovers(accounts):
    new = await accounts.create_merchant("Shop", max_payments=100, days=10, now=NOW)
    mid = new.merchant.merchant_id
    await accounts.use_payment(mid, NOW)
    later = NOW + timedelta(days=15)
    merchant, extended = await extend_subscription(accounts, mid, PRO, "10002", later)
    assert extended and merchant.active(later)
    assert merchant.expires_at == later + timedelta(days=30)
    assert (merchant.max_payments, merchant.payments_used) == (500, 0)


async def test_the_same_order_extends_once(accounts):
    mid = (await accounts.create_merchant("Shop", days=10, now=NOW)).merchant.merchant_id
    first, extended = await extend_subscription(accounts, mid, PRO, "10003", NOW)
    again, extended_again = await extend_subscription(accounts, mid, PRO, "10003", NOW)
    assert extended and not extended_again and again == first
    racing = await asyncio.gather(
        *(extend_subscription(accounts, mid, PRO, "10004", NOW) for _ in range(10))
    )
    assert sum(extended for _, extended in racing) == 1
    final = await accounts.get_merchant(mid)
    assert final.expires_at == NOW + timedelta(days=10 + 30 + 30)


async def test_one_order_extends_one_merchant_only(accounts):
    a = (await accounts.create_merchant("A", now=NOW)).merchant.merchant_id
    b = (await accounts.create_merchant("B", now=NOW)).merchant.merchant_id
    await extend_subscription(accounts, a, PRO, "10005", NOW)
    before = await accounts.get_merchant(b)
    with pytest.raises(SubscriptionOrderTaken):
        await extend_subscription(accounts, b, PRO, "10005", NOW)
    assert await accounts.get_merchant(b) == before


async def test_an_unknown_merchant_claims_no_order(accounts, redis_client, redis_prefix):
    with pytest.raises(KeyError):
        await extend_subscription(accounts, "999", PRO, "10006", NOW)
    assert not await redis_client.exists(Keys(redis_prefix).subscription_order("10006"))


async def test_the_script_keys_share_one_slot():
    keys = Keys("ap")
    assert key_slot(keys.merchant("42").encode()) == key_slot(
        keys.subscription_orders("42").encode()
    )
