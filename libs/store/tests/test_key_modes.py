"""The three key modes of a merchant (real Redis): live, test and bot keys rotate apart."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from autopay_store.accounts import Accounts
from autopay_store.keys import Keys
from autopay_store.secrets import SecretBox

NOW = datetime(2026, 5, 16, 4, 0, tzinfo=UTC)


@pytest.fixture
def accounts(redis_client, redis_prefix) -> Accounts:
    return Accounts(redis_client, Keys(redis_prefix), SecretBox(SecretBox.generate_key()))


async def test_a_bot_key_acts_in_the_live_world_and_says_so(accounts):
    new = await accounts.create_merchant("Shop", now=NOW)
    mid = new.merchant.merchant_id
    bot = await accounts.rotate_api_key(mid, mode="bot")
    assert bot.startswith("ap_bot_")
    holder = await accounts.identify(bot)
    assert holder.mode == "bot" and holder.merchant.merchant_id == mid
    assert not holder.merchant.test_mode
    assert (await accounts.identify(new.api_key)).mode == "live"
    test = await accounts.rotate_api_key(mid, mode="test")
    assert (await accounts.identify(test)).merchant.test_mode


async def test_each_mode_rotates_alone(accounts):
    new = await accounts.create_merchant("Shop", now=NOW)
    mid = new.merchant.merchant_id
    bot = await accounts.rotate_api_key(mid, mode="bot")
    test = await accounts.rotate_api_key(mid, test=True)  # the old spelling still works
    live = await accounts.rotate_api_key(mid, mode="live")
    assert await accounts.identify(new.api_key) is None
    assert await accounts.identify(bot) is not None and await accounts.identify(test) is not None
    bot2 = await accounts.rotate_api_key(mid, mode="bot")
    assert await accounts.identify(bot) is None
    assert (await accounts.identify(bot2)).mode == "bot"
    assert await accounts.identify(live) is not None and await accounts.identify(test) is not None
    with pytest.raises(ValueError):
        await accounts.rotate_api_key(mid, mode="root")  # type: ignore[arg-type]
