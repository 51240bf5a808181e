"""A mailbox (its normalized address) belongs to one merchant; card_last4 is four ASCII digits."""

from __future__ import annotations

import contextlib

import pytest

from autopay_contracts import (
    MailboxRegistered,
    MailboxRemoved,
    is_sandbox_mailbox,
    mailbox_id_for,
    parse_event,
)

imap = pytest.importorskip("autopay_testing.imap")

PASSWORD = "abcd efgh ijkl mnop"
MBX = mailbox_id_for("karta@gmail.com")
EN = {"accept-language": "en"}
INVALID_CARD_LAST4 = 'Invalid card_last4: must be a string of 4 digits, e.g. "6412".'


@contextlib.asynccontextmanager
async def gateway_with_mailbox(settings, start_gateway):
    """The app, with an IMAP server where karta@gmail.com logs in with `PASSWORD`."""
    async with imap.ImapServer({"karta@gmail.com": PASSWORD}) as server:
        settings = settings.model_copy(update={"imap_port": server.port})
        async with start_gateway(settings) as gw:
            yield gw


def card(gmail: str, last4: str = "6412", **extra) -> dict:
    return {"card_last4": last4, "gmail": gmail, "app_password": PASSWORD, **extra}


async def last_config(nats_client, gw, mailbox_id: str = MBX):
    js = nats_client.jetstream()
    msg = await js.get_last_msg(
        gw.ns.stream_name("MAILBOX_CONFIG"), gw.ns.mailbox_config(mailbox_id)
    )
    return parse_event(msg.data), msg.seq


async def delete(gw, key: str, card_id: int):
    return await gw.client.delete(f"/api/cards/{card_id}", headers={"x-api-key": key})


# --- card_last4 ---------------------------------------------------------------------------

NOT_FOUR_ASCII_DIGITS = [
    "١٢٣٤",  # Arabic-Indic digits
    "１２３４",  # fullwidth digits
    "1234\n",
    " 1234",
    "1234 ",
    "12345",
    "123",
    "",
    1234.0,
    1234,
    True,
    [],
    {},
]


@pytest.mark.parametrize("value", NOT_FOUR_ASCII_DIGITS, ids=repr)
async def test_create_payment_refuses_a_card_last4_that_is_not_four_ascii_digits(gw, value):
    shop = await gw.merchant()
    body = {"amount": 50037, "card_last4": value, "gmail": "karta@gmail.com"}
    response = await gw.post("/api/create-payment", shop.api_key, body, **EN)
    assert response.status_code == 400, response.text
    assert response.json() == {"detail": INVALID_CARD_LAST4}


@pytest.mark.parametrize("value", NOT_FOUR_ASCII_DIGITS, ids=repr)
async def test_connecting_a_card_refuses_a_card_last4_that_is_not_four_ascii_digits(gw, value):
    shop = await gw.merchant(card=False)
    response = await gw.post("/api/cards", shop.api_key, card("shop@gmail.com", value), **EN)
    assert response.status_code == 400, response.text
    assert response.json() == {"detail": INVALID_CARD_LAST4}
    assert await gw.accounts.list_cards(shop.merchant.merchant_id) == []


# --- one merchant per mailbox -------------------------------------------------------------


async def test_another_merchant_on_any_spelling_of_a_taken_mailbox_gets_409(
    settings, start_gateway, streams
):
    async with gateway_with_mailbox(settings, start_gateway) as gw:
        owner = await gw.merchant("Owner", card=False)
        other = await gw.merchant("Other", card=False)
        taken = await gw.post("/api/cards", owner.api_key, card("karta@gmail.com"))
        assert taken.status_code == 200, taken.text

        for spelling in ("k.arta+x@gmail.com", "KARTA@googlemail.com", "ka.rta@gmail.com"):
            response = await gw.post("/api/cards", other.api_key, card(spelling, "9999"), **EN)
            assert response.status_code == 409, response.text
            assert response.json()["detail"].startswith(
                "This Gmail mailbox is connected to another account."
            )
        uzbek = await gw.post("/api/cards", other.api_key, card("k.arta+x@gmail.com", "9999"))
        assert uzbek.json()["detail"].startswith("Bu gmail pochta qutisi boshqa hisobga ulangan.")
        same_card = await gw.post("/api/cards", other.api_key, card("k.arta+x@gmail.com"))
        assert (same_card.status_code, same_card.json()) == (
            409,
            {"detail": "Bu karta va gmail boshqa hisobga ulangan."},
        )
        assert await gw.accounts.list_cards(other.merchant.merchant_id) == []


async def test_the_same_merchant_with_another_spelling_gets_the_same_mailbox(
    settings, start_gateway, streams, nats_client
):
    async with gateway_with_mailbox(settings, start_gateway) as gw:
        shop = await gw.merchant(card=False)
        first = (await gw.post("/api/cards", shop.api_key, card("karta@gmail.com"))).json()
        again = await gw.post("/api/cards", shop.api_key, card(" K.Arta+shop@GoogleMail.com "))
        assert again.status_code == 200, again.text
        assert (
            again.json()
            == first
            == {
                "success": True,
                "id": first["id"],
                "card_last4": "6412",
                "gmail": "karta@gmail.com",
            }
        )
        other_card = await gw.post("/api/cards", shop.api_key, card("k.a.r.t.a@gmail.com", "8675"))
        assert other_card.json()["gmail"] == "karta@gmail.com"
        cards = (await gw.get("/api/my-cards", shop.api_key)).json()["cards"]
        assert [(c["card_last4"], c["gmail"]) for c in cards] == [
            ("6412", "karta@gmail.com"),
            ("8675", "karta@gmail.com"),
        ]
        event, _ = await last_config(nats_client, gw)
        assert (event.mailbox_id, event.gmail) == (MBX, "karta@gmail.com")

        payment = {"amount": 50037, "card_last4": "6412", "gmail": "K.ARTA+bot@googlemail.com"}
        created = await gw.post("/api/create-payment", shop.api_key, payment)
        assert created.status_code == 200, created.text
        order = (await gw.orders.get(created.json()["order_id"])).order
        assert (order.gmail, order.mailbox_id) == ("karta@gmail.com", MBX)
        checked = await gw.post("/api/check-payment", shop.api_key, {"order_id": order.order_id})
        assert checked.json()["gmail"] == "karta@gmail.com"
        # the same amount on the same card through another spelling is the same reservation
        payment["gmail"] = "karta@gmail.com"
        assert (await gw.post("/api/create-payment", shop.api_key, payment)).status_code == 409


async def test_a_hostile_tenant_cannot_take_over_a_mailbox(
    settings, start_gateway, streams, nats_client
):
    """survives: a hostile tenant — another merchant, even with a working App Password and any
    spelling of the address, cannot add a card on the mailbox, replace its password or
    aliases, re-register it with mail-ingest, remove the owner's card or create payments on it."""
    async with gateway_with_mailbox(settings, start_gateway) as gw:
        owner = await gw.merchant("Owner", card=False)
        hostile = await gw.merchant("Hostile", card=False)
        test_key = await gw.accounts.rotate_api_key(hostile.merchant.merchant_id, test=True)
        body = card("karta@gmail.com", aliases=["kassa@shop.uz"])
        owned = (await gw.post("/api/cards", owner.api_key, body)).json()
        registered, seq = await last_config(nats_client, gw)
        password_before = await gw.accounts.app_password(MBX)

        attempts = [
            card("k.arta+x@gmail.com", "9999"),
            card("karta@googlemail.com", "6412"),
            card("KARTA@gmail.com", "1111", aliases=["attacker@gmail.com"]),
            {**card("k.arta@gmail.com", "2222"), "app_password": "wrong password"},
        ]
        pay = {"amount": 50037, "card_last4": "6412", "gmail": "k.arta+x@gmail.com"}
        for attempt in attempts:
            response = await gw.post("/api/cards", hostile.api_key, attempt)
            assert response.status_code in (400, 409), response.text
        assert (await delete(gw, hostile.api_key, owned["id"])).status_code == 404
        assert (await gw.post("/api/create-payment", hostile.api_key, pay)).status_code == 400
        # The test key only ever reaches its own sandbox: its cards and orders are there.
        for attempt in attempts:
            response = await gw.post("/api/cards", test_key, attempt)
            assert response.status_code == 200, response.text
        assert (await delete(gw, test_key, owned["id"])).status_code == 404
        sandboxed = await gw.post("/api/create-payment", test_key, pay)
        assert sandboxed.status_code == 200, sandboxed.text
        order = (await gw.orders.get(sandboxed.json()["order_id"])).order
        assert order.test_mode and is_sandbox_mailbox(order.mailbox_id)

        mailbox = await gw.accounts.mailbox("karta@gmail.com")
        assert mailbox.owner == owner.merchant.merchant_id
        assert list(mailbox.cards) == ["6412"]
        assert mailbox.aliases == ("kassa@shop.uz",)
        assert await gw.accounts.app_password(MBX) == password_before == PASSWORD
        assert await gw.accounts.list_cards(hostile.merchant.merchant_id) == []
        assert await last_config(nats_client, gw) == (registered, seq)
        pay = {"amount": 50037, "card_last4": "6412", "gmail": "karta@gmail.com"}
        assert (await gw.post("/api/create-payment", owner.api_key, pay)).status_code == 200


async def test_removing_the_last_card_releases_the_mailbox_and_deletes_its_password(
    settings, start_gateway, streams, nats_client
):
    async with gateway_with_mailbox(settings, start_gateway) as gw:
        first = await gw.merchant("First", card=False)
        second = await gw.merchant("Second", card=False)
        a = (await gw.post("/api/cards", first.api_key, card("karta@gmail.com"))).json()
        b = (await gw.post("/api/cards", first.api_key, card("k.arta@gmail.com", "8675"))).json()

        assert (await delete(gw, first.api_key, a["id"])).status_code == 200
        event, _ = await last_config(nats_client, gw)
        assert isinstance(event, MailboxRegistered)  # still watched: one card is left
        assert await gw.accounts.app_password(MBX) == PASSWORD
        blocked = await gw.post("/api/cards", second.api_key, card("karta@gmail.com", "1111"))
        assert blocked.status_code == 409

        assert (await delete(gw, first.api_key, b["id"])).status_code == 200
        event, _ = await last_config(nats_client, gw)
        assert isinstance(event, MailboxRemoved)
        assert await gw.accounts.app_password(MBX) is None
        assert await gw.accounts.mailbox("karta@gmail.com") is None

        now_free = await gw.post("/api/cards", second.api_key, card("karta+2@gmail.com", "1111"))
        assert now_free.status_code == 200, now_free.text
        assert (await gw.accounts.mailbox("karta@gmail.com")).owner == (second.merchant.merchant_id)


# --- aliases ------------------------------------------------------------------------------


async def test_aliases_are_normalized_stored_and_sent_to_mail_ingest(
    settings, start_gateway, streams, nats_client
):
    async with gateway_with_mailbox(settings, start_gateway) as gw:
        shop = await gw.merchant(card=False)
        aliases = [
            " Kassa@Shop.uz",
            "k.arta+fwd@gmail.com",
            "kassa@shop.uz",
            "Shop.Box@googlemail.com",
        ]
        response = await gw.post(
            "/api/cards", shop.api_key, card("karta@gmail.com", aliases=aliases)
        )
        assert response.status_code == 200, response.text
        event, _ = await last_config(nats_client, gw)
        assert event.aliases == ("kassa@shop.uz", "shopbox@gmail.com")
        assert (await gw.accounts.mailbox("karta@gmail.com")).aliases == event.aliases

        # connecting another card without `aliases` keeps them; an empty list clears them
        await gw.post("/api/cards", shop.api_key, card("karta@gmail.com", "8675"))
        assert (await last_config(nats_client, gw))[0].aliases == event.aliases
        await gw.post("/api/cards", shop.api_key, card("karta@gmail.com", "8675", aliases=[]))
        assert (await last_config(nats_client, gw))[0].aliases == ()


@pytest.mark.parametrize(
    "aliases",
    [
        "kassa@shop.uz",
        ["not an address"],
        ["kassa@shop.uz.\n"],
        [1],
        [f"a{i}@x.uz" for i in range(11)],
    ],
    ids=["not a list", "not an address", "trailing dot", "not a string", "eleven"],
)
async def test_invalid_aliases_are_400(gw, aliases):
    shop = await gw.merchant(card=False)
    response = await gw.post(
        "/api/cards", shop.api_key, card("karta@gmail.com", aliases=aliases), **EN
    )
    assert response.status_code == 400, response.text
    assert response.json() == {
        "detail": "Invalid aliases: must be a list of up to 10 e-mail addresses."
    }
