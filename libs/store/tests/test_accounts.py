from datetime import UTC, datetime, timedelta

import pytest

from autopay_store.accounts import Accounts, CardTaken, SubscriptionExhausted
from autopay_store.keys import Keys
from autopay_store.secrets import SecretBox

NOW = datetime(2026, 5, 16, 4, 0, tzinfo=UTC)


@pytest.fixture
def accounts(redis_client, redis_prefix) -> Accounts:
    return Accounts(redis_client, Keys(redis_prefix), SecretBox(SecretBox.generate_key()))


async def test_api_key_is_stored_hashed_and_authenticates(accounts, redis_client, redis_prefix):
    new = await accounts.create_merchant("Shop", now=NOW)
    assert new.api_key.startswith("ap_live_") and new.webhook_secret.startswith("whsec_")
    assert (await accounts.authenticate(new.api_key)).merchant_id == new.merchant.merchant_id
    assert await accounts.authenticate("ap_live_wrong") is None
    dump = [await redis_client.dump(k) async for k in redis_client.scan_iter(f"{redis_prefix}*")]
    assert not any(new.api_key.encode() in (d or b"") for d in dump)
    assert not any(new.webhook_secret.encode() in (d or b"") for d in dump)


async def test_rotating_a_key_revokes_the_old_one(accounts):
    new = await accounts.create_merchant("Shop", now=NOW)
    rotated = await accounts.rotate_api_key(new.merchant.merchant_id)
    assert await accounts.authenticate(new.api_key) is None
    assert await accounts.authenticate(rotated) is not None
    test_key = await accounts.rotate_api_key(new.merchant.merchant_id, test=True)
    assert test_key.startswith("ap_test_")
    assert (await accounts.authenticate(test_key)).test_mode
    assert not (await accounts.authenticate(rotated)).test_mode


async def test_subscription_limits_payments(accounts):
    new = await accounts.create_merchant("Shop", max_payments=2, now=NOW)
    mid = new.merchant.merchant_id
    await accounts.use_payment(mid, NOW)
    await accounts.use_payment(mid, NOW)
    with pytest.raises(SubscriptionExhausted) as exc:
        await accounts.use_payment(mid, NOW)
    assert exc.value.reason == "limit"
    with pytest.raises(SubscriptionExhausted) as exc:
        await accounts.use_payment(mid, NOW + timedelta(days=31))
    assert exc.value.reason == "inactive"
    assert (await accounts.get_merchant(mid)).payments_used == 2


async def test_card_pair_belongs_to_one_merchant(accounts):
    a = (await accounts.create_merchant("A", now=NOW)).merchant.merchant_id
    b = (await accounts.create_merchant("B", now=NOW)).merchant.merchant_id
    card = await accounts.add_card(a, "6412", "Karta@Gmail.com", app_password="abcd efgh")
    assert card == await accounts.add_card(a, "6412", "karta@gmail.com")
    with pytest.raises(CardTaken):
        await accounts.add_card(b, "6412", "karta@gmail.com")
    assert await accounts.find_card(a, "6412", "karta@gmail.com") == card
    assert await accounts.find_card(b, "6412", "karta@gmail.com") is None
    assert await accounts.app_password(card.mailbox_id) == "abcd efgh"
    assert [c.card_id for c in await accounts.list_cards(a)] == [card.card_id]
    await accounts.remove_card(a, card.card_id)
    assert await accounts.list_cards(a) == []
    await accounts.add_card(b, "6412", "karta@gmail.com")


async def test_old_webhook_secret_valid_for_24h_after_rotation(accounts):
    new = await accounts.create_merchant("Shop", now=NOW)
    mid = new.merchant.merchant_id
    rotated = await accounts.rotate_webhook_secret(mid, NOW)
    assert await accounts.webhook_secrets(mid, NOW) == [rotated, new.webhook_secret]
    assert await accounts.webhook_secrets(mid, NOW + timedelta(hours=25)) == [rotated]


async def test_rate_limit_is_per_merchant(accounts):
    mid = (await accounts.create_merchant("Shop", now=NOW)).merchant.merchant_id
    assert (await accounts.get_merchant(mid)).rate_per_s == 20.0
    updated = await accounts.set_rate_limit(mid, per_s=500, burst=1000)
    assert (updated.rate_per_s, updated.rate_burst) == (500.0, 1000)
    with pytest.raises(ValueError):
        await accounts.set_rate_limit(mid, per_s=0, burst=1)
    with pytest.raises(KeyError):
        await accounts.set_rate_limit("nobody", per_s=1, burst=1)
