"""The mailbox migration against real Redis and NATS: state under old mailbox ids moves to the
normalized ids, a second run changes nothing, conflicts between merchants are left alone."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from autopay_contracts import (
    MailboxRegistered,
    MailboxRemoved,
    Namespace,
    legacy_mailbox_id_for,
    mailbox_id_for,
    parse_event,
)
from autopay_contracts.streams import MAILBOX_CONFIG
from autopay_store.accounts import Accounts, Card
from autopay_store.keys import Keys
from autopay_store.migrations import migrate_mailboxes
from autopay_store.orders import OrderBook
from autopay_store.secrets import SecretBox
from autopay_testing.builders import T0, credit, order

NOW = datetime(2026, 5, 16, 4, 0, tzinfo=UTC)
DOTTED = "k.arta@gmail.com"
LEGACY = legacy_mailbox_id_for(DOTTED)
GMAIL = "karta@gmail.com"
MBX = mailbox_id_for(GMAIL)


@pytest.fixture
def keys(redis_prefix) -> Keys:
    return Keys(redis_prefix)


@pytest.fixture
def accounts(redis_client, keys) -> Accounts:
    return Accounts(redis_client, keys, SecretBox(SecretBox.generate_key()))


@pytest.fixture
def book(redis_client, keys) -> OrderBook:
    return OrderBook(redis_client, keys, quarantine_s=900)


async def old_card(redis, keys: Keys, merchant_id: str, card_id: int, gmail: str, last4: str):
    """A card as the old code stored it: the address lowercased, the id of that spelling."""
    mailbox_id = legacy_mailbox_id_for(gmail)
    card = Card(card_id, merchant_id, last4, gmail.lower(), mailbox_id)
    await redis.set(keys.card_owner(mailbox_id, last4), f"{merchant_id}:{card_id}")
    await redis.hset(keys.merchant_cards(merchant_id), str(card_id), json.dumps(card.__dict__))
    return card


async def register(js, ns: Namespace, gmail: str, revision: int = 1000, **kw) -> None:
    event = MailboxRegistered(
        mailbox_id=legacy_mailbox_id_for(gmail),
        gmail=gmail.lower(),
        revision=revision,
        imap_host="imap.gmail.com",
        imap_port=993,
        username=gmail.lower(),
        password_encrypted="token",
        **kw,
    )
    await js.publish(
        event.subject(ns), event.to_bytes(), stream=MAILBOX_CONFIG.name(ns), headers=event.headers()
    )


async def config_of(js, ns: Namespace, mailbox_id: str):
    msg = await js.get_last_msg(MAILBOX_CONFIG.name(ns), ns.mailbox_config(mailbox_id))
    return parse_event(msg.data)


async def snapshot(redis, prefix: str) -> dict[str, bytes]:
    keys = [k async for k in redis.scan_iter(match=f"{prefix}:*", count=1000)]
    return {k: await redis.dump(k) for k in sorted(keys)}


async def test_a_dotted_mailbox_moves_and_its_waiting_order_is_paid_on_the_new_id(
    redis_client, redis_prefix, keys, accounts, book, nats_client, streams, namespace
):
    js = nats_client.jetstream()
    shop = (await accounts.create_merchant("Shop", now=NOW)).merchant.merchant_id
    await old_card(redis_client, keys, shop, 7, DOTTED, "6412")
    await redis_client.set(keys.mailbox_password(LEGACY), accounts.secrets.encrypt("app pw"))
    waiting = order("10001", merchant_id=shop, mailbox_id=LEGACY, gmail=DOTTED)
    await book.create(waiting)
    await redis_client.hset(
        keys.mailbox(LEGACY, "cursor"), mapping={"uidvalidity": 3, "last_uid": 42}
    )
    await redis_client.set(keys.mailbox(LEGACY, "seen", "mid:<m1@bank>"), 1, ex=3600)
    await redis_client.hset(keys.mailbox(LEGACY, "health"), mapping={"status": "connected"})
    evidence = keys.mailbox(LEGACY, "evidence", "abc")
    await redis_client.set(evidence, b"raw mail")
    await register(js, namespace, DOTTED, aliases=("Kassa@Shop.uz",), allow_forwarded=True)

    report = await migrate_mailboxes(redis_client, keys, js, namespace)

    assert report.moved == [{"gmail": GMAIL, "mailbox_id": MBX, "from": [LEGACY]}]
    assert (report.conflicts, report.cards, report.owners, report.events) == ([], 1, 1, 2)
    assert (report.state.orders, report.state.deadlines, report.state.locators) == (1, 1, 1)
    # accounts: the card, its owner, the password
    card = await accounts.find_card(shop, "6412", "k.arta+x@gmail.com")
    assert (card.card_id, card.gmail, card.mailbox_id) == (7, GMAIL, MBX)
    assert (await accounts.mailbox(GMAIL)).owner == shop
    assert await accounts.app_password(MBX) == "app pw"
    # the order book: the order (its JSON too), its hold, locator and deadline
    record = await book.get("10001")
    assert (record.status, record.order.mailbox_id, record.order.gmail) == ("waiting", MBX, GMAIL)
    assert await redis_client.hgetall(keys.card(MBX, "6412", "holds")) == {
        str(waiting.amount_tiyin): "10001"
    }
    assert await book.due(T0 + timedelta(hours=1)) == ["10001"]
    # mail-ingest: cursor, dedup marker, health moved; raw evidence stays where events point
    assert await redis_client.hgetall(keys.mailbox(MBX, "cursor")) == {
        "uidvalidity": "3",
        "last_uid": "42",
    }
    assert await redis_client.exists(keys.mailbox(MBX, "seen", "mid:<m1@bank>"))
    assert (await redis_client.hgetall(keys.mailbox(MBX, "health")))["gmail"] == GMAIL
    assert await redis_client.get(evidence) == "raw mail"
    legacy_left = [k async for k in redis_client.scan_iter(match=f"*{LEGACY}*")]
    assert legacy_left == [evidence]
    # mail-ingest is told: the new id registered with the same settings, the old one removed
    registered = await config_of(js, namespace, MBX)
    assert isinstance(registered, MailboxRegistered)
    assert (registered.gmail, registered.username, registered.password_encrypted) == (
        GMAIL,
        DOTTED,
        "token",
    )
    assert (registered.aliases, registered.allow_forwarded) == (("kassa@shop.uz",), True)
    assert isinstance(await config_of(js, namespace, LEGACY), MailboxRemoved)

    # a credit read under the new id pays the moved order
    outcome = await book.match_credit(
        credit("c1", mailbox_id=MBX, gmail=GMAIL), T0 + timedelta(minutes=1)
    )
    assert (outcome.kind, outcome.record.order.order_id) == ("matched", "10001")
    assert (await book.get("10001")).status == "paid"

    # a second run changes nothing
    before = await snapshot(redis_client, redis_prefix)
    info = await js.stream_info(MAILBOX_CONFIG.name(namespace))
    again = await migrate_mailboxes(redis_client, keys, js, namespace)
    assert (again.moved, again.conflicts, again.cards, again.owners, again.events) == (
        [],
        [],
        0,
        0,
        0,
    )
    assert not again.state.any()
    after = await snapshot(redis_client, redis_prefix)
    marker = keys.migration("mailbox-owners")
    assert {k: v for k, v in after.items() if k != marker} == {
        k: v for k, v in before.items() if k != marker
    }
    state = (await js.stream_info(MAILBOX_CONFIG.name(namespace))).state
    assert (state.messages, state.last_seq) == (info.state.messages, info.state.last_seq)


async def test_one_merchants_spellings_merge_into_one_mailbox(
    redis_client, keys, accounts, book, nats_client, streams, namespace
):
    js = nats_client.jetstream()
    shop = (await accounts.create_merchant("Shop", now=NOW)).merchant.merchant_id
    await old_card(redis_client, keys, shop, 3, "K.Arta@gmail.com", "6412")
    await old_card(redis_client, keys, shop, 9, "karta+shop@googlemail.com", "6412")  # same pair
    await old_card(redis_client, keys, shop, 11, "karta+shop@googlemail.com", "8675")
    await book.create(order("10001", merchant_id=shop, mailbox_id=LEGACY, gmail=DOTTED))
    other = legacy_mailbox_id_for("karta+shop@googlemail.com")
    await book.create(
        order("10002", 100, merchant_id=shop, mailbox_id=other, gmail="karta+shop@googlemail.com")
    )

    report = await migrate_mailboxes(redis_client, keys, js, namespace)

    assert report.conflicts == []
    assert report.moved == [{"gmail": GMAIL, "mailbox_id": MBX, "from": sorted([LEGACY, other])}]
    cards = await accounts.list_cards(shop)
    assert [(c.card_id, c.card_last4, c.mailbox_id) for c in cards] == [
        (3, "6412", MBX),
        (11, "8675", MBX),
    ]
    mailbox = await accounts.mailbox(GMAIL)
    assert (mailbox.owner, {k: v.card_id for k, v in mailbox.cards.items()}) == (
        shop,
        {"6412": 3, "8675": 11},
    )
    assert {(await book.get(i)).order.mailbox_id for i in ("10001", "10002")} == {MBX}


async def test_two_merchants_on_spellings_of_one_mailbox_are_a_conflict_left_alone(
    redis_client, keys, accounts, book, nats_client, streams, namespace
):
    js = nats_client.jetstream()
    a = (await accounts.create_merchant("A", now=NOW)).merchant.merchant_id
    b = (await accounts.create_merchant("B", now=NOW)).merchant.merchant_id
    await old_card(redis_client, keys, a, 3, DOTTED, "6412")
    await old_card(redis_client, keys, b, 4, GMAIL, "8675")
    await book.create(order("10001", merchant_id=a, mailbox_id=LEGACY, gmail=DOTTED))
    await redis_client.hset(
        keys.mailbox(LEGACY, "cursor"), mapping={"uidvalidity": 3, "last_uid": 9}
    )
    await register(js, namespace, DOTTED)

    report = await migrate_mailboxes(redis_client, keys, js, namespace)

    assert report.moved == [] and report.events == 0
    assert [
        (c.gmail, c.mailbox_id, c.legacy_mailbox_ids, c.merchants) for c in report.conflicts
    ] == [(GMAIL, MBX, [LEGACY], sorted([a, b]))]
    assert (await book.get("10001")).order.mailbox_id == LEGACY  # nothing moved
    assert await redis_client.exists(keys.mailbox(LEGACY, "cursor"))
    assert isinstance(await config_of(js, namespace, LEGACY), MailboxRegistered)
    mailbox = await accounts.mailbox(GMAIL)  # closed to new cards until an operator settles it
    assert (mailbox.owner, mailbox.disputed) == (None, tuple(sorted([a, b])))
    # and reported again, without changes, on the next run
    again = await migrate_mailboxes(redis_client, keys, js, namespace)
    assert len(again.conflicts) == 1 and again.owners == 0


async def test_mailboxes_whose_id_stays_get_their_owner_record(
    redis_client, keys, accounts, nats_client, streams, namespace
):
    shop = (await accounts.create_merchant("Shop", now=NOW)).merchant.merchant_id
    await old_card(redis_client, keys, shop, 3, GMAIL, "6412")
    await redis_client.set(keys.mailbox_password(MBX), accounts.secrets.encrypt("pw"))
    report = await migrate_mailboxes(redis_client, keys, nats_client.jetstream(), namespace)
    assert (report.moved, report.owners, report.cards) == ([], 1, 0)
    mailbox = await accounts.mailbox(GMAIL)
    assert (mailbox.owner, list(mailbox.cards)) == (shop, ["6412"])
    assert await accounts.app_password(MBX) == "pw"
    assert not await redis_client.exists(keys.mailbox_password(MBX))  # the record holds it
