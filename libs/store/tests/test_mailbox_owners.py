"""Mailbox ownership in Redis: one merchant per mailbox (every spelling of its address), atomic."""

import asyncio
import json
from datetime import UTC, datetime

import pytest

from autopay_contracts import mailbox_id_for
from autopay_store.accounts import Accounts, Card, CardTaken, MailboxTaken
from autopay_store.keys import Keys
from autopay_store.mailboxes import MIGRATION
from autopay_store.secrets import SecretBox

NOW = datetime(2026, 5, 16, 4, 0, tzinfo=UTC)
MBX = mailbox_id_for("karta@gmail.com")


@pytest.fixture
def keys(redis_prefix) -> Keys:
    return Keys(redis_prefix)


@pytest.fixture
def accounts(redis_client, keys) -> Accounts:
    return Accounts(redis_client, keys, SecretBox(SecretBox.generate_key()))


async def merchants(accounts: Accounts, *names: str) -> list[str]:
    return [(await accounts.create_merchant(n, now=NOW)).merchant.merchant_id for n in names]


async def test_every_spelling_is_one_mailbox_with_the_same_card(accounts):
    (shop,) = await merchants(accounts, "Shop")
    card = await accounts.add_card(shop, "6412", "karta@gmail.com", app_password="pw")
    again = await accounts.add_card(shop, "6412", " K.Arta+shop@GoogleMail.com ")
    assert again == card
    assert (card.gmail, card.mailbox_id) == ("karta@gmail.com", MBX)
    second = await accounts.add_card(shop, "8675", "k.a.r.t.a@gmail.com")
    assert second.mailbox_id == MBX and second.card_id != card.card_id
    mailbox = await accounts.mailbox("KARTA+x@gmail.com")
    assert (mailbox.owner, sorted(mailbox.cards)) == (shop, ["6412", "8675"])
    assert await accounts.app_password(MBX) == "pw"


async def test_another_merchant_gets_mailbox_taken_for_any_card_or_spelling(accounts):
    owner, other = await merchants(accounts, "Owner", "Other")
    await accounts.add_card(owner, "6412", "karta@gmail.com", app_password="owner's")
    with pytest.raises(MailboxTaken):
        await accounts.add_card(other, "9999", "k.arta+x@gmail.com", app_password="other's")
    with pytest.raises(CardTaken):
        await accounts.add_card(other, "6412", "karta@googlemail.com")
    assert await accounts.list_cards(other) == []
    assert await accounts.app_password(MBX) == "owner's"


async def test_two_merchants_racing_for_one_mailbox_cannot_both_win(accounts):
    names = [f"M{i}" for i in range(8)]
    ids = await merchants(accounts, *names)
    spellings = ["karta@gmail.com", "k.arta@gmail.com", "karta+a@googlemail.com", "KARTA@gmail.com"]

    async def connect(i: int, merchant_id: str):
        try:
            return await accounts.add_card(merchant_id, f"{1000 + i}", spellings[i % 4], f"pw{i}")
        except MailboxTaken:
            return None

    results = await asyncio.gather(*(connect(i, m) for i, m in enumerate(ids)))
    winners = [card for card in results if card is not None]
    assert len(winners) == 1
    mailbox = await accounts.mailbox("karta@gmail.com")
    assert mailbox.owner == winners[0].merchant_id
    assert list(mailbox.cards) == [winners[0].card_last4]
    assert await accounts.app_password(MBX) == f"pw{ids.index(winners[0].merchant_id)}"


async def test_removing_the_last_card_releases_the_mailbox_and_its_password(accounts):
    first, second = await merchants(accounts, "First", "Second")
    a = await accounts.add_card(first, "6412", "karta@gmail.com", app_password="pw")
    b = await accounts.add_card(first, "8675", "k.arta@gmail.com")
    await accounts.remove_card(first, a.card_id)
    assert (await accounts.mailbox("karta@gmail.com")).owner == first
    assert await accounts.app_password(MBX) == "pw"
    with pytest.raises(MailboxTaken):
        await accounts.add_card(second, "1111", "karta@gmail.com")

    await accounts.remove_card(first, b.card_id)
    assert await accounts.mailbox("karta@gmail.com") is None
    assert await accounts.app_password(MBX) is None
    taken = await accounts.add_card(second, "1111", "karta+new@gmail.com", app_password="new")
    assert (await accounts.mailbox("karta@gmail.com")).owner == second
    assert await accounts.find_card(second, "1111", "karta@gmail.com") == taken


async def test_only_the_owner_declares_aliases(accounts):
    owner, other = await merchants(accounts, "Owner", "Other")
    await accounts.add_card(
        owner,
        "6412",
        "karta@gmail.com",
        aliases=("Kassa@Shop.uz", "k.arta@gmail.com", "kassa@shop.uz"),
    )
    assert (await accounts.mailbox("karta@gmail.com")).aliases == ("kassa@shop.uz",)
    await accounts.add_card(owner, "6412", "karta@gmail.com")  # None keeps them
    assert (await accounts.mailbox("karta@gmail.com")).aliases == ("kassa@shop.uz",)
    with pytest.raises(MailboxTaken):
        await accounts.add_card(other, "1111", "karta@gmail.com", aliases=("evil@gmail.com",))
    assert (await accounts.mailbox("karta@gmail.com")).aliases == ("kassa@shop.uz",)
    await accounts.add_card(owner, "6412", "karta@gmail.com", aliases=())
    assert (await accounts.mailbox("karta@gmail.com")).aliases == ()


@pytest.mark.parametrize("last4", ["١٢٣٤", "1234\n", " 1234", "12345", "123", 1234, 1234.0, True])
async def test_card_last4_is_four_ascii_digits(accounts, last4):
    (shop,) = await merchants(accounts, "Shop")
    with pytest.raises(ValueError):
        await accounts.add_card(shop, last4, "karta@gmail.com")


async def legacy_card(redis, keys: Keys, merchant_id: str, card_id: int, last4: str) -> Card:
    """A card as it was stored before mailboxes had owners: card-owner key and card entry."""
    card = Card(card_id, merchant_id, last4, "karta@gmail.com", MBX)
    await redis.set(keys.card_owner(MBX, last4), f"{merchant_id}:{card_id}")
    await redis.hset(keys.merchant_cards(merchant_id), str(card_id), json.dumps(card.__dict__))
    return card


async def test_a_mailbox_connected_before_ownership_is_adopted_by_its_merchant(
    accounts, redis_client, keys
):
    """survives: a hostile tenant — a mailbox connected before owners existed is not up for
    grabs: its card-owner keys say whose it is, even before the migration ran."""
    owner, hostile = await merchants(accounts, "Owner", "Hostile")
    await legacy_card(redis_client, keys, owner, 500, "6412")
    token = accounts.secrets.encrypt("legacy pw")
    await redis_client.set(keys.mailbox_password(MBX), token)

    with pytest.raises(MailboxTaken):
        await accounts.add_card(hostile, "9999", "k.arta@gmail.com", app_password="evil")
    mailbox = await accounts.mailbox("karta@gmail.com")
    assert (mailbox.owner, list(mailbox.cards)) == (owner, ["6412"])
    assert await accounts.app_password(MBX) == "legacy pw"

    added = await accounts.add_card(owner, "8675", "karta@gmail.com")
    assert added.card_id != 500
    await accounts.remove_card(owner, added.card_id)  # the legacy card keeps the mailbox
    assert (await accounts.mailbox("karta@gmail.com")).owner == owner


async def test_several_merchants_on_one_legacy_mailbox_make_it_disputed(
    accounts, redis_client, keys
):
    a, b, c = await merchants(accounts, "A", "B", "C")
    await legacy_card(redis_client, keys, a, 500, "6412")
    card_b = await legacy_card(redis_client, keys, b, 501, "8675")
    for merchant in (a, c):
        with pytest.raises(MailboxTaken):
            await accounts.add_card(merchant, "1111", "karta@gmail.com")
    mailbox = await accounts.mailbox("karta@gmail.com")
    assert (mailbox.owner, mailbox.disputed) == (None, (a, b))
    assert await accounts.find_card(a, "6412", "karta@gmail.com") is not None  # still pays

    await accounts.remove_card(b, card_b.card_id)  # one merchant left: the dispute is over
    assert (await accounts.mailbox("karta@gmail.com")).owner == a
    await accounts.add_card(a, "1111", "karta@gmail.com")


async def test_after_the_migration_no_legacy_scan_is_made(accounts, redis_client, keys):
    owner, other = await merchants(accounts, "Owner", "Other")
    await redis_client.set(keys.migration(MIGRATION), 1)
    await legacy_card(redis_client, keys, owner, 500, "6412")  # (cannot exist after it ran)
    await accounts.add_card(other, "1111", "karta@gmail.com")
    assert (await accounts.mailbox("karta@gmail.com")).owner == other
