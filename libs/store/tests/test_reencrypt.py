"""`admin secrets reencrypt` against real Redis and NATS: every stored secret ends under the
newest key, still opens to the same plaintext, and a second run changes nothing.

Survives: an operator retiring a leaked Fernet key. After the run, no value in Redis or in the
MAILBOX_CONFIG stream needs the old key (a box holding only the new key opens all of them).
"""

from __future__ import annotations

from datetime import UTC, datetime

from autopay_contracts import MailboxRegistered, mailbox_id_for, parse_event
from autopay_contracts.streams import MAILBOX_CONFIG
from autopay_store.accounts import Accounts
from autopay_store.keys import Keys
from autopay_store.reencrypt import reencrypt_secrets
from autopay_store.secrets import SecretBox
from autopay_testing.jetstream import publish_event, stored

NOW = datetime(2026, 12, 3, 5, 0, tzinfo=UTC)
OLD, NEW = SecretBox.generate_key(), SecretBox.generate_key()


async def test_every_secret_moves_to_the_newest_key(
    redis_client, redis_prefix, nats_client, namespace, streams
):
    keys = Keys(redis_prefix)
    old_accounts = Accounts(redis_client, keys, SecretBox(OLD))
    shop = await old_accounts.create_merchant("Shop", now=NOW)
    mid = shop.merchant.merchant_id
    rotated = await old_accounts.rotate_webhook_secret(mid, NOW)  # current + previous secret
    await old_accounts.add_card(mid, "6412", "karta@gmail.com", "app pass one")
    mbx = mailbox_id_for("karta@gmail.com")
    legacy_key = keys.mailbox_password(mailbox_id_for("old@gmail.com"))
    await redis_client.set(legacy_key, SecretBox(OLD).encrypt("app pass two"))
    registered = MailboxRegistered(
        mailbox_id=mbx,
        gmail="karta@gmail.com",
        revision=5,
        imap_host="imap.gmail.com",
        imap_port=993,
        username="karta@gmail.com",
        password_encrypted=SecretBox(OLD).encrypt("app pass one"),
    )
    await publish_event(nats_client, namespace, registered)
    js = nats_client.jetstream()

    both = SecretBox(f"{NEW},{OLD}")
    report = await reencrypt_secrets(redis_client, keys, both, js, namespace)
    assert report.unreadable == []
    assert report.reencrypted == 5  # two webhook secrets, two passwords, one config event
    assert report.republished == 1

    only_new = Accounts(redis_client, keys, SecretBox(NEW))
    assert await only_new.webhook_secrets(mid, NOW) == [rotated, shop.webhook_secret]
    assert await only_new.app_password(mbx) == "app pass one"
    assert SecretBox(NEW).decrypt(await redis_client.get(legacy_key)) == "app pass two"
    events = [parse_event(e) for e in await stored(nats_client, MAILBOX_CONFIG.name(namespace))]
    latest = events[-1]
    assert isinstance(latest, MailboxRegistered) and latest.revision > 5
    assert SecretBox(NEW).decrypt(latest.password_encrypted) == "app pass one"
    assert latest.model_copy(update={"password_encrypted": "", "revision": 5}) == (
        registered.model_copy(update={"password_encrypted": ""})
    )

    again = await reencrypt_secrets(redis_client, keys, both, js, namespace)
    assert (again.reencrypted, again.republished, again.current) == (0, 0, 5)


async def test_a_token_no_key_opens_is_reported_and_kept(redis_client, redis_prefix):
    keys = Keys(redis_prefix)
    accounts = Accounts(redis_client, keys, SecretBox(OLD))
    shop = await accounts.create_merchant("Shop", now=NOW)
    key = keys.merchant(shop.merchant.merchant_id)
    before = await redis_client.hget(key, "webhook_secret")
    report = await reencrypt_secrets(redis_client, keys, SecretBox(NEW))
    assert report.unreadable == [f"{key} webhook_secret"]
    assert await redis_client.hget(key, "webhook_secret") == before
