"""The merchant bot's own state in real Redis: chat links with the bot key encrypted, alert
states that change once, the recent-orders projection and purchases."""

from datetime import UTC, datetime, timedelta

from autopay_store.keys import Keys
from autopay_store.merchant_bot import (
    MailboxAlertState,
    MerchantBotStore,
    Purchase,
    RecentOrder,
)
from autopay_store.secrets import SecretBox


def _store(redis_client, redis_prefix) -> MerchantBotStore:
    return MerchantBotStore(redis_client, Keys(redis_prefix), SecretBox(SecretBox.generate_key()))


async def test_a_chat_is_linked_to_one_merchant_and_its_key_is_stored_encrypted(
    redis_client, redis_prefix
):
    store = _store(redis_client, redis_prefix)
    assert (await store.chat(42)).merchant_id is None
    await store.link(42, "7", "ap_live_secret")
    await store.set_language(42, "ru")
    chat = await store.chat_of_merchant("7")
    assert (chat.chat_id, chat.merchant_id, chat.bot_key, chat.language) == (
        42,
        "7",
        "ap_live_secret",
        "ru",
    )
    raw = await redis_client.hgetall(Keys(redis_prefix).bot("chat", "42"))
    assert "ap_live_secret" not in str(raw)
    assert await store.linked_merchants() == ["7"]
    await store.mark_unreachable(42, "Forbidden: bot was blocked by the user")
    assert (await store.chat(42)).unreachable.startswith("Forbidden")
    await store.mark_reachable(42)
    assert (await store.chat(42)).unreachable is None


async def test_every_key_is_in_the_bots_own_keyspace(redis_client, redis_prefix):
    store = _store(redis_client, redis_prefix)
    now = datetime.now(UTC)
    await store.link(1, "7", "k")
    await store.transition("webhook", "7", "failing")
    await store.first_time("credit:x")
    await store.count_webhook_failure("7")
    await store.set_mailbox_state(
        "mb", MailboxAlertState("down", False, "a@gmail.com"), down_since=now
    )
    await store.remember_order(RecentOrder("10001", "7", "mb", "6412", 100, "waiting", now))
    await store.remember_purchase(Purchase("10002", "7", "Pro", 1, 9_900_000))
    keys = await redis_client.keys(f"{redis_prefix}:*")
    assert keys and all(k.startswith(f"{redis_prefix}:bot:") for k in keys), keys


async def test_states_and_once(redis_client, redis_prefix):
    store = _store(redis_client, redis_prefix)
    assert await store.transition("webhook", "7", "failing") is None
    assert await store.transition("webhook", "7", "failing") == "failing"
    assert await store.first_time("credit:abc") is True
    assert await store.first_time("credit:abc") is False
    assert await store.count_webhook_failure("7") == 1
    assert await store.count_webhook_failure("7") == 2
    await store.reset_webhook_failures("7")
    assert await store.count_webhook_failure("7") == 1


async def test_mailboxes_down_for_long(redis_client, redis_prefix):
    store = _store(redis_client, redis_prefix)
    now = datetime.now(UTC)
    down = MailboxAlertState("down", False, "a@gmail.com")
    await store.set_mailbox_state("old", down, down_since=now - timedelta(minutes=5))
    await store.set_mailbox_state("new", down, down_since=now)
    assert await store.down_for_long(now - timedelta(minutes=1)) == ["old"]
    await store.set_mailbox_state("old", MailboxAlertState("ok", False, "a@gmail.com"))
    assert await store.down_for_long(now - timedelta(minutes=1)) == []
    assert (await store.mailbox_state("old")).state == "ok"


async def test_recent_orders_newest_first_with_their_latest_status(redis_client, redis_prefix):
    store = _store(redis_client, redis_prefix)
    now = datetime.now(UTC)
    for i, age in enumerate((300, 60, 7200)):
        created = now - timedelta(seconds=age)
        await store.remember_order(
            RecentOrder(f"1000{i}", "7", "mb", "6412", 100 + i, "waiting", created)
        )
    await store.remember_order(
        RecentOrder("10000", "7", "mb", "6412", 100, "expired", now - timedelta(seconds=300))
    )
    found = await store.recent_orders("7", "mb", "6412", now - timedelta(hours=1))
    assert [(o.order_id, o.status) for o in found] == [("10001", "waiting"), ("10000", "expired")]
    assert await store.recent_orders("7", "mb", "9999", now - timedelta(hours=1)) == []
    assert await store.purchase("nope") is None
