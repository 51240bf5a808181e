"""The account journal against real NATS (a key-value bucket) and real Redis: every account
change is copied; after the Redis keys are gone, `restore` brings them back, and a second
restore changes nothing.

Survives: Redis losing everything (the accounts come back from the bucket), NATS away during a
change (the key stays marked and the sweep copies it), two writers of one key (compare-and-set
on the entry's revision: the bucket ends with Redis's latest value)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from autopay_contracts.streams import ACCOUNTS
from autopay_store.accounts import Accounts
from autopay_store.journal import AccountJournal, entry_name
from autopay_store.keys import Keys
from autopay_store.sandbox import SandboxCards
from autopay_store.secrets import SecretBox
from autopay_store.tariffs import Tariff, Tariffs

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


async def _world(redis_client, redis_prefix, nats_client, namespace):
    bucket = await nats_client.jetstream().key_value(ACCOUNTS.name(namespace))
    keys = Keys(redis_prefix)
    journal = AccountJournal(redis_client, keys, bucket)
    box = SecretBox(SecretBox.generate_key())
    return keys, bucket, journal, Accounts(redis_client, keys, box, journal)


async def _forget_redis(redis_client, keys: Keys) -> None:
    found = [k async for k in redis_client.scan_iter(match=f"{keys.prefix}:*")]
    if found:
        await redis_client.delete(*found)


async def test_accounts_come_back_after_redis_is_lost(
    redis_client, redis_prefix, nats_client, namespace, streams
):
    keys, _, journal, accounts = await _world(redis_client, redis_prefix, nats_client, namespace)
    created = await accounts.create_merchant("Shop", now=NOW)
    mid = created.merchant.merchant_id
    bot_key = await accounts.rotate_api_key(mid, mode="bot")
    await accounts.add_card(mid, "6412", "k.arta@gmail.com", app_password="abcd efgh ijkl mnop")
    await accounts.set_settings(mid, webhook_url="https://shop.example/h", notify_events=("paid",))
    secret = await accounts.rotate_webhook_secret(mid, NOW)
    await Tariffs(redis_client, keys, journal).save(Tariff("Pro", 99_000, 10_000, 30))
    await SandboxCards(redis_client, keys, journal).add(mid, "4242", "sandbox@gmail.com")
    await accounts.use_payment(mid, NOW)  # usage is not copied: counted from ORDERS

    await _forget_redis(redis_client, keys)
    assert await accounts.authenticate(created.api_key) is None

    report = await journal.restore()
    assert report.restored >= 8 and report.merchants == [mid]
    assert (await accounts.authenticate(created.api_key)).merchant_id == mid
    assert (await accounts.identify(bot_key)).mode == "bot"
    assert [c.card_last4 for c in await accounts.list_cards(mid)] == ["6412"]
    assert await accounts.app_password((await accounts.list_cards(mid))[0].mailbox_id) == (
        "abcd efgh ijkl mnop"
    )
    assert secret in await accounts.webhook_secrets(mid, NOW)
    merchant = await accounts.get_merchant(mid)
    assert merchant.webhook_url == "https://shop.example/h"
    assert (await Tariffs(redis_client, keys).get("Pro")).price_som == 99_000
    assert await SandboxCards(redis_client, keys).find(mid, "4242", "sandbox@gmail.com")
    # the sequences came back too: a new merchant and a new card get new ids
    other = await accounts.create_merchant("Other", now=NOW)
    assert int(other.merchant.merchant_id) > int(mid)

    again = await journal.restore()
    assert (again.restored, again.present) == (0, report.restored + 2)  # + the new merchant


async def test_a_removed_key_is_removed_from_the_copy(
    redis_client, redis_prefix, nats_client, namespace, streams
):
    keys, _, journal, accounts = await _world(redis_client, redis_prefix, nats_client, namespace)
    created = await accounts.create_merchant("Shop", now=NOW)
    mid = created.merchant.merchant_id
    card = await accounts.add_card(mid, "6412", "karta@gmail.com", app_password="pw")
    old_key = created.api_key
    await accounts.rotate_api_key(mid)
    await accounts.remove_card(mid, card.card_id)
    await _forget_redis(redis_client, keys)
    await journal.restore()
    assert await accounts.authenticate(old_key) is None  # the rotated-away key stays gone
    assert await accounts.list_cards(mid) == []
    assert await accounts.mailbox("karta@gmail.com") is None


async def test_a_copy_that_could_not_be_written_is_swept_later(
    redis_client, redis_prefix, nats_client, namespace, streams
):
    keys, bucket, journal, accounts = await _world(
        redis_client, redis_prefix, nats_client, namespace
    )
    created = await accounts.create_merchant("Shop", now=NOW)
    mid = created.merchant.merchant_id

    class Away:
        async def get(self, name):
            raise ConnectionError("nats away")

    journal.bucket = Away()
    await accounts.set_rate_limit(mid, per_s=5, burst=10)  # does not raise
    assert keys.merchant(mid) in await redis_client.smembers(keys.journal_dirty)
    journal.bucket = bucket
    assert await journal.sweep() == 1
    assert await redis_client.smembers(keys.journal_dirty) == set()
    entry = await bucket.get(entry_name(keys, keys.merchant(mid)))
    assert json.loads(entry.value)["value"]["rate_burst"] == "10"


async def test_the_copy_follows_redis_whoever_writes_last(
    redis_client, redis_prefix, nats_client, namespace, streams
):
    keys, bucket, journal, accounts = await _world(
        redis_client, redis_prefix, nats_client, namespace
    )
    created = await accounts.create_merchant("Shop", now=NOW)
    mid = created.merchant.merchant_id
    other = AccountJournal(redis_client, keys, bucket)
    await redis_client.hset(keys.merchant(mid), "name", "Renamed")
    await other.record(keys.merchant(mid))
    await journal.record(keys.merchant(mid))  # same value: nothing new written
    entry = await bucket.get(entry_name(keys, keys.merchant(mid)))
    assert json.loads(entry.value)["value"]["name"] == "Renamed"
    assert "payments_used" not in json.loads(entry.value)["value"]


async def test_the_bots_chat_links_and_purchases_come_back_after_redis_is_lost(
    redis_client, redis_prefix, nats_client, namespace, streams
):
    """Survives: Redis losing everything while merchants use the bot. Their chats are linked
    again, and a subscription order paid after the rebuild still names its buyer."""
    from autopay_store.merchant_bot import MerchantBotStore, Purchase

    bucket = await nats_client.jetstream().key_value(ACCOUNTS.name(namespace))
    keys = Keys(redis_prefix)
    journal = AccountJournal(redis_client, keys, bucket, dirty_key=keys.bot_journal_dirty)
    box = SecretBox(SecretBox.generate_key())
    store = MerchantBotStore(redis_client, keys, box, journal=journal)
    await store.link(501, "7", "apc_bot_key")
    await store.set_language(501, "ru")
    purchase = Purchase("10042", "7", "Pro", 501, 9_900_000)
    await store.remember_purchase(purchase)
    assert await redis_client.scard(keys.bot_journal_dirty) == 0  # every copy written

    await _forget_redis(redis_client, keys)
    assert (await store.chat(501)).merchant_id is None

    await AccountJournal(redis_client, keys, bucket).restore()  # what admin rebuild runs
    chat = await store.chat(501)
    assert (chat.merchant_id, chat.bot_key, chat.language) == ("7", "apc_bot_key", "ru")
    assert (await store.chat_of_merchant("7")).chat_id == 501
    assert await store.linked_merchants() == ["7"]
    assert await store.purchase("10042") == purchase
