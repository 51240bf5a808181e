"""The sandbox is a separate world: what a test key can and cannot reach.

Attack: a leaked (or the merchant's own) test key used against the live world: registering a
Gmail address owned by a live merchant, changing or removing a live card, reading or cancelling
live orders, replaying an idempotent response into a live call. And a live key on the sandbox.
"""

from __future__ import annotations

import contextlib

import pytest

from autopay_contracts import (
    SandboxTransferRequested,
    is_sandbox_mailbox,
    mailbox_id_for,
    parse_event,
    sandbox_mailbox_id_for,
)
from autopay_contracts.streams import MAILBOX_CONFIG, SANDBOX
from autopay_testing.jetstream import stored

imap = pytest.importorskip("autopay_testing.imap")

PASSWORD = "abcd efgh ijkl mnop"
LIVE = {"card_last4": "6412", "gmail": "karta@gmail.com"}
EN = {"accept-language": "en"}


@contextlib.asynccontextmanager
async def gateway_with_mailbox(settings, start_gateway):
    """The app, with an IMAP server where karta@gmail.com logs in with `PASSWORD`."""
    async with imap.ImapServer({"karta@gmail.com": PASSWORD}) as server:
        settings = settings.model_copy(update={"imap_port": server.port})
        async with start_gateway(settings) as gw:
            yield gw, server


async def live_and_test_keys(gw):
    """A live merchant owning karta@gmail.com (card 6412, verified login) and its test key."""
    owner = await gw.merchant("Owner", card=False)
    added = await gw.post("/api/cards", owner.api_key, {**LIVE, "app_password": PASSWORD})
    assert added.status_code == 200, added.text
    mid = owner.merchant.merchant_id
    test_key = await gw.accounts.rotate_api_key(mid, test=True)
    return owner, test_key


async def config_messages(nats_client, gw) -> list[dict]:
    return await stored(nats_client, MAILBOX_CONFIG.name(gw.ns))


async def test_test_key_cannot_touch_a_live_mailbox(settings, streams, start_gateway, nats_client):
    """A test key, its own merchant's or another's, registers a card on a live mailbox (with a
    wrong password), then tries to remove the live card: the live mailbox keeps its owner, its
    password and its watcher configuration, and the platform never logs in for the test key."""
    async with gateway_with_mailbox(settings, start_gateway) as (gw, server):
        owner, own_test_key = await live_and_test_keys(gw)
        stranger = await gw.merchant("Stranger", card=False)
        stranger_test_key = await gw.accounts.rotate_api_key(
            stranger.merchant.merchant_id, test=True
        )
        configs_before = await config_messages(nats_client, gw)
        password_before = await gw.accounts.app_password(mailbox_id_for(LIVE["gmail"]))
        logins_before = server.connections_accepted
        live_cards = (await gw.get("/api/my-cards", owner.api_key)).json()["cards"]

        for key in (own_test_key, stranger_test_key):
            for spelling in ("karta@gmail.com", "K.arta+x@googlemail.com"):
                body = {"card_last4": "6412", "gmail": spelling, "app_password": "wrong one"}
                response = await gw.post("/api/cards", key, body)
                assert response.status_code == 200, response.text  # a sandbox card
                assert response.json()["gmail"] == "karta@gmail.com"
            for card in live_cards:
                removed = await gw.client.delete(
                    f"/api/cards/{card['id']}", headers={"x-api-key": key}
                )
                assert removed.status_code == 404  # card ids are unique across both worlds

        assert server.connections_accepted == logins_before
        assert await config_messages(nats_client, gw) == configs_before
        assert await gw.accounts.app_password(mailbox_id_for(LIVE["gmail"])) == password_before
        mailbox = await gw.accounts.mailbox(LIVE["gmail"])
        assert mailbox is not None and mailbox.owner == owner.merchant.merchant_id
        assert (await gw.get("/api/my-cards", owner.api_key)).json()["cards"] == live_cards
        card = await gw.accounts.find_card(owner.merchant.merchant_id, "6412", LIVE["gmail"])
        assert card is not None and card.mailbox_id == mailbox_id_for(LIVE["gmail"])


async def test_sandbox_cards_are_their_own_world(gw):
    """A test key sees only its sandbox cards and a live key only live ones; a sandbox card
    needs no app password and lives under the merchant's sandbox mailbox id."""
    shop = await gw.merchant("Shop")  # live card karta@gmail.com / 6412
    mid = shop.merchant.merchant_id
    test_key = await gw.accounts.rotate_api_key(mid, test=True)

    assert (await gw.get("/api/my-cards", test_key)).json() == {"cards": []}
    added = await gw.post("/api/cards", test_key, {"card_last4": "4242", "gmail": "a@gmail.com"})
    assert added.status_code == 200, added.text
    again = await gw.post("/api/cards", test_key, {"card_last4": "4242", "gmail": "A@gmail.com"})
    assert again.json()["id"] == added.json()["id"]

    test_cards = (await gw.get("/api/my-cards", test_key)).json()["cards"]
    assert [(c["card_last4"], c["gmail"], c["status"]) for c in test_cards] == [
        ("4242", "a@gmail.com", "sandbox")
    ]
    live_cards = (await gw.get("/api/my-cards", shop.api_key)).json()["cards"]
    assert [(c["card_last4"], c["gmail"]) for c in live_cards] == [("6412", "karta@gmail.com")]

    stored_card = await gw.sandbox_cards.find(mid, "4242", "a@gmail.com")
    assert stored_card.mailbox_id == sandbox_mailbox_id_for(mid, "a@gmail.com")
    assert is_sandbox_mailbox(stored_card.mailbox_id)
    assert await gw.accounts.mailbox("a@gmail.com") is None  # no live mailbox claimed

    # A live key cannot pay into the sandbox card, a test key not into the live card.
    body = {"amount": 50_000, "card_last4": "4242", "gmail": "a@gmail.com"}
    assert (await gw.post("/api/create-payment", shop.api_key, body)).status_code == 400
    body = {"amount": 50_000, **{"card_last4": "6412", "gmail": "karta@gmail.com"}}
    assert (await gw.post("/api/create-payment", test_key, body)).status_code == 400

    removed = await gw.client.delete(
        f"/api/cards/{added.json()['id']}", headers={"x-api-key": test_key}
    )
    assert removed.status_code == 200
    assert (await gw.get("/api/my-cards", test_key)).json() == {"cards": []}
    assert len((await gw.get("/api/my-cards", shop.api_key)).json()["cards"]) == 1


async def test_orders_stay_in_their_world(gw):
    """A test order is made under the sandbox mailbox id; a test key gets 404 for the
    merchant's live orders (it can neither read nor cancel them), a live key for test ones."""
    shop = await gw.merchant("Shop")
    mid = shop.merchant.merchant_id
    test_key = await gw.accounts.rotate_api_key(mid, test=True)
    await gw.post("/api/cards", test_key, LIVE)

    live = await gw.post("/api/create-payment", shop.api_key, {"amount": 50_037, **LIVE})
    test = await gw.post("/api/create-payment", test_key, {"amount": 50_037, **LIVE})
    assert live.status_code == 200 and test.status_code == 200, (live.text, test.text)
    live_id, test_id = live.json()["order_id"], test.json()["order_id"]

    live_order = (await gw.orders.get(live_id)).order
    test_order = (await gw.orders.get(test_id)).order
    assert (live_order.test_mode, live_order.mailbox_id) == (False, mailbox_id_for(LIVE["gmail"]))
    assert test_order.test_mode is True
    assert test_order.mailbox_id == sandbox_mailbox_id_for(mid, LIVE["gmail"])

    for key, other in ((test_key, live_id), (shop.api_key, test_id)):
        checked = await gw.post("/api/check-payment", key, {"order_id": other})
        cancelled = await gw.post("/api/cancel-payment", key, {"order_id": other})
        assert (checked.status_code, cancelled.status_code) == (404, 404)
    assert (await gw.orders.get(live_id)).status == "waiting"
    own = await gw.post("/api/check-payment", test_key, {"order_id": test_id})
    assert own.json()["status"] == "waiting"


async def test_idempotency_keys_do_not_cross_worlds(gw):
    """The same Idempotency-Key and body from a test key and then the live key: the live call
    runs (a live order), it is not the test call's replayed answer."""
    shop = await gw.merchant("Shop")
    test_key = await gw.accounts.rotate_api_key(shop.merchant.merchant_id, test=True)
    await gw.post("/api/cards", test_key, LIVE)
    body = {"amount": 50_111, **LIVE}
    test = await gw.post("/api/create-payment", test_key, body, **{"idempotency-key": "k1"})
    live = await gw.post("/api/create-payment", shop.api_key, body, **{"idempotency-key": "k1"})
    assert test.status_code == 200 and live.status_code == 200
    assert "idempotent-replayed" not in live.headers
    assert live.json()["order_id"] != test.json()["order_id"]
    assert (await gw.orders.get(live.json()["order_id"])).order.test_mode is False


async def test_live_key_gets_403_on_the_sandbox(gw):
    shop = await gw.merchant("Shop")
    for body in ({"amount": 50_000, **LIVE}, {}, None):
        response = await gw.post("/api/sandbox/transfer", shop.api_key, body, **EN)
        assert response.status_code == 403, response.text
        assert response.json() == {"detail": "This action requires a test-mode API key."}


async def test_sandbox_transfer_is_recorded_for_mail_ingest(gw, nats_client):
    """A test key's transfer to its sandbox card is stored in SANDBOX (for mail-ingest to
    read); to a card it has not connected, or with a bad amount, it is a 400."""
    shop = await gw.merchant("Shop")
    mid = shop.merchant.merchant_id
    test_key = await gw.accounts.rotate_api_key(mid, test=True)

    unknown = await gw.post("/api/sandbox/transfer", test_key, {"amount": 50_000, **LIVE})
    assert unknown.status_code == 400  # the live card is not the test key's
    await gw.post("/api/cards", test_key, LIVE)
    bad = await gw.post("/api/sandbox/transfer", test_key, {"amount": -5, **LIVE})
    assert bad.status_code == 400

    response = await gw.post("/api/sandbox/transfer", test_key, {"amount": 50_037, **LIVE})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["success"] is True and answer["test"] is True and answer["amount"] == 50_037

    stored_requests = await stored(nats_client, SANDBOX.name(gw.ns))
    assert len(stored_requests) == 1
    request = parse_event(stored_requests[0])
    assert isinstance(request, SandboxTransferRequested)
    assert (request.merchant_id, request.card_last4, request.gmail) == (mid, "6412", LIVE["gmail"])
    assert request.amount_tiyin == 5_003_700
    assert request.transfer_id == answer["transfer_id"]
