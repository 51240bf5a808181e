"""`admin card add` (aliases, one merchant per mailbox) and `admin migrate-mailboxes`."""

import asyncio
import json

import nats
import pytest
from typer.testing import CliRunner

from autopay_cli.main import app
from autopay_contracts import (
    MailboxRegistered,
    Namespace,
    legacy_mailbox_id_for,
    mailbox_id_for,
    provision_streams,
)
from autopay_store.accounts import Card
from autopay_store.keys import Keys
from autopay_store.secrets import SecretBox
from autopay_testing.redis_cluster import sync_client

runner = CliRunner()


@pytest.fixture
def cli_env(monkeypatch, redis_url, nats_url, redis_prefix, namespace):
    for name, value in {
        "AUTOPAY_REDIS_URL": redis_url,
        "AUTOPAY_NATS_URL": nats_url,
        "AUTOPAY_REDIS_PREFIX": redis_prefix,
        "AUTOPAY_NAMESPACE": namespace.root,
        "AUTOPAY_SECRET_KEYS": SecretBox.generate_key(),
    }.items():
        monkeypatch.setenv(name, value)

    async def provision():
        client = await nats.connect(nats_url)
        await provision_streams(client.jetstream(), namespace)
        await client.drain()

    asyncio.run(provision())


def merchant() -> str:
    created = runner.invoke(app, ["admin", "merchant", "create", "--name", "Shop", "--json"])
    assert created.exit_code == 0, created.output
    return json.loads(created.output)["merchant_id"]


def add_card(merchant_id: str, last4: str, gmail: str, *extra: str):
    return runner.invoke(
        app,
        [
            *("admin", "card", "add", "--merchant", merchant_id),
            *("--card-last4", last4, "--gmail", gmail, "--app-password", "pw", *extra),
        ],
    )


def registered(nats_url: str, namespace: Namespace, gmail: str) -> MailboxRegistered:
    async def last() -> MailboxRegistered:
        client = await nats.connect(nats_url)
        try:
            msg = await client.jetstream().get_last_msg(
                namespace.stream_name("MAILBOX_CONFIG"),
                namespace.mailbox_config(mailbox_id_for(gmail)),
            )
        finally:
            await client.drain()
        return MailboxRegistered.model_validate_json(msg.data)

    return asyncio.run(last())


def test_card_add_declares_aliases_and_normalizes_the_mailbox(cli_env, nats_url, namespace):
    shop = merchant()
    added = add_card(
        shop, "6412", "K.Arta+x@gmail.com", "--alias", "Kassa@Shop.uz", "--alias", "karta@gmail.com"
    )
    assert added.exit_code == 0, added.output
    assert json.loads(added.output)["gmail"] == "karta@gmail.com"
    event = registered(nats_url, namespace, "karta@gmail.com")
    assert (event.gmail, event.aliases) == ("karta@gmail.com", ("kassa@shop.uz",))


def test_card_add_refuses_another_merchants_mailbox_and_bad_card_digits(cli_env):
    owner, other = merchant(), merchant()
    assert add_card(owner, "6412", "karta@gmail.com").exit_code == 0
    taken = add_card(other, "9999", "k.arta@googlemail.com")
    assert taken.exit_code == 1
    assert "belongs to another merchant" in taken.output
    for last4 in ("١٢٣٤", "12345", "64 2"):
        assert add_card(owner, last4, "karta@gmail.com").exit_code == 2


def test_migrate_mailboxes_moves_a_dotted_mailbox_once(
    cli_env, redis_url, redis_prefix, redis_client
):
    shop = merchant()
    keys = Keys(redis_prefix)
    old = legacy_mailbox_id_for("k.arta@gmail.com")
    card = Card(5, shop, "6412", "k.arta@gmail.com", old)
    with sync_client(redis_url) as legacy:  # as the old code did
        legacy.set(keys.card_owner(old, "6412"), f"{shop}:5")
        legacy.hset(keys.merchant_cards(shop), "5", json.dumps(card.__dict__))

    first = runner.invoke(app, ["admin", "migrate-mailboxes", "--json"])
    assert first.exit_code == 0, first.output
    report = json.loads(first.output)
    new = mailbox_id_for("karta@gmail.com")
    assert report["moved"] == [{"gmail": "karta@gmail.com", "mailbox_id": new, "from": [old]}]
    assert (report["cards"], report["owners"], report["conflicts"]) == (1, 1, [])

    second = json.loads(runner.invoke(app, ["admin", "migrate-mailboxes", "--json"]).output)
    assert (second["moved"], second["cards"], second["owners"], second["events"]) == ([], 0, 0, 0)
    text = runner.invoke(app, ["admin", "migrate-mailboxes"])
    assert text.exit_code == 0 and "cards=0" in text.output


def test_secrets_reencrypt_moves_everything_to_the_new_key(
    cli_env, monkeypatch, nats_url, namespace
):
    """The operator's key rotation: new key first, reencrypt, then the old key can go."""
    import os

    old = os.environ["AUTOPAY_SECRET_KEYS"]
    shop = merchant()
    assert add_card(shop, "6412", "karta@gmail.com").exit_code == 0
    new = SecretBox.generate_key()
    monkeypatch.setenv("AUTOPAY_SECRET_KEYS", f"{new},{old}")
    result = runner.invoke(app, ["admin", "secrets", "reencrypt", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["reencrypted"] == 3 and report["republished"] == 1  # secret, password, event
    assert report["unreadable"] == []
    event = registered(nats_url, namespace, "karta@gmail.com")
    assert SecretBox(new).decrypt(event.password_encrypted) == "pw"
    again = json.loads(runner.invoke(app, ["admin", "secrets", "reencrypt", "--json"]).output)
    assert again["reencrypted"] == 0


def test_tariffs_give_merchants_their_limits_and_rate(cli_env, redis_url, redis_prefix):
    created = runner.invoke(
        app,
        [
            *("admin", "tariff", "create", "--name", "Premium", "--price", "150000"),
            *("--max-payments", "5000", "--days", "30", "--rate-per-second", "50", "--burst", "80"),
        ],
    )
    assert created.exit_code == 0, created.output
    assert json.loads(created.output)["max_payments"] == 5000
    bad = runner.invoke(
        app, ["admin", "tariff", "create", "--name", "X", "--price", "1", "--max-payments", "0",
              "--days", "30"],
    )  # fmt: skip
    assert bad.exit_code == 2
    listed = json.loads(runner.invoke(app, ["admin", "tariff", "list"]).output)
    assert [t["name"] for t in listed["tariffs"]] == ["Premium"]

    on_tariff = runner.invoke(
        app, ["admin", "merchant", "create", "--name", "Big", "--tariff", "Premium", "--json"]
    )
    merchant_id = json.loads(on_tariff.output)["merchant_id"]
    stored = sync_client(redis_url).hgetall(Keys(redis_prefix).merchant(merchant_id))
    assert (stored["tariff_name"], stored["max_payments"]) == ("Premium", "5000")
    assert (float(stored["rate_per_s"]), stored["rate_burst"]) == (50.0, "80")

    shop = merchant()  # on the default tariff name, which is no tariff: its own options
    moved = runner.invoke(
        app, ["admin", "tariff", "set", "--merchant", shop, "--tariff", "Premium"]
    )
    assert moved.exit_code == 0, moved.output
    assert json.loads(moved.output)["tariff_name"] == "Premium"
    missing = runner.invoke(app, ["admin", "tariff", "set", "--merchant", shop, "--tariff", "Nope"])
    assert missing.exit_code == 1
