"""Connecting a card checks the IMAP login first and tells mail-ingest which mailbox to watch."""

from __future__ import annotations

import pytest

from autopay_contracts import MailboxRegistered, MailboxRemoved, mailbox_id_for, parse_event

imap = pytest.importorskip("autopay_testing.imap")

NEW_CARD = {"card_last4": "4321", "gmail": "shop@gmail.com", "app_password": "abcd efgh ijkl mnop"}


async def _config_event(nats_client, gw, gmail: str):
    js = nats_client.jetstream()
    subject = gw.ns.mailbox_config(mailbox_id_for(gmail))
    msg = await js.get_last_msg(gw.ns.stream_name("MAILBOX_CONFIG"), subject)
    return parse_event(msg.data)


async def test_card_with_a_working_app_password_is_connected(
    settings, start_gateway, streams, nats_client
):
    async with imap.ImapServer({"shop@gmail.com": "abcd efgh ijkl mnop"}) as server:
        settings = settings.model_copy(update={"imap_port": server.port})
        async with start_gateway(settings) as gw:
            shop = await gw.merchant(card=False)
            response = await gw.post("/api/cards", shop.api_key, NEW_CARD)
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["success"] is True
            assert (body["card_last4"], body["gmail"]) == ("4321", "shop@gmail.com")

            event = await _config_event(nats_client, gw, "shop@gmail.com")
            assert isinstance(event, MailboxRegistered)
            assert (event.imap_host, event.imap_port, event.imap_tls) == (
                "127.0.0.1",
                server.port,
                False,
            )
            assert event.username == "shop@gmail.com"
            assert "abcd" not in event.password_encrypted
            assert gw.secrets.decrypt(event.password_encrypted) == "abcd efgh ijkl mnop"

            cards = (await gw.get("/api/my-cards", shop.api_key)).json()["cards"]
            assert [(c["id"], c["card_last4"]) for c in cards] == [(body["id"], "4321")]
            payment = {"amount": 1000, "card_last4": "4321", "gmail": "shop@gmail.com"}
            created = await gw.post("/api/create-payment", shop.api_key, payment)
            assert created.status_code == 200

            removed = await gw.client.delete(
                f"/api/cards/{body['id']}", headers={"x-api-key": shop.api_key}
            )
            assert removed.json() == {"success": True, "id": body["id"]}
            assert isinstance(
                await _config_event(nats_client, gw, "shop@gmail.com"), MailboxRemoved
            )
            assert (await gw.get("/api/my-cards", shop.api_key)).json() == {"cards": []}
            missing = await gw.client.delete(
                f"/api/cards/{body['id']}", headers={"x-api-key": shop.api_key}
            )
            assert missing.status_code == 404


async def test_wrong_app_password_is_400_with_a_hint(settings, start_gateway, streams):
    async with imap.ImapServer({"shop@gmail.com": "the right one"}) as server:
        settings = settings.model_copy(update={"imap_port": server.port})
        async with start_gateway(settings) as gw:
            shop = await gw.merchant(card=False)
            response = await gw.post("/api/cards", shop.api_key, NEW_CARD)
            assert response.status_code == 400
            assert "App Password" in response.json()["detail"]
            assert "myaccount.google.com/apppasswords" in response.json()["detail"]
            assert await gw.accounts.list_cards(shop.merchant.merchant_id) == []


async def test_unreachable_imap_server_is_400(gw):
    shop = await gw.merchant(card=False)
    response = await gw.post("/api/cards", shop.api_key, NEW_CARD, **{"accept-language": "en"})
    assert response.status_code == 400
    assert response.json()["detail"].startswith("Could not connect to the Gmail IMAP server")


async def test_removing_one_of_two_cards_on_a_mailbox_keeps_it_watched(gw, nats_client):
    shop = await gw.merchant()
    second = await gw.accounts.add_card(shop.merchant.merchant_id, "8675", "karta@gmail.com")
    response = await gw.client.delete(
        f"/api/cards/{second.card_id}", headers={"x-api-key": shop.api_key}
    )
    assert response.status_code == 200
    js = nats_client.jetstream()
    info = await js.stream_info(gw.ns.stream_name("MAILBOX_CONFIG"))
    assert info.state.messages == 0


async def test_a_card_of_another_merchant_is_409(settings, start_gateway, streams):
    async with imap.ImapServer({"karta@gmail.com": "x"}) as server:
        settings = settings.model_copy(update={"imap_port": server.port})
        async with start_gateway(settings) as gw:
            await gw.merchant("Owner")
            other = await gw.merchant("Other", card=False)
            body = {"card_last4": "6412", "gmail": "karta@gmail.com", "app_password": "x"}
            response = await gw.post("/api/cards", other.api_key, body)
            assert response.status_code == 409
            assert response.json() == {"detail": "Bu karta va gmail boshqa hisobga ulangan."}


async def test_imap_login_checks_are_limited_per_merchant_and_per_mailbox(
    settings, start_gateway, streams
):
    """Survives: a merchant (or a leaked key) making the platform log in to Gmail at speed, to
    guess an app password or to get a mailbox throttled by Google. Past the limit the answer
    is 429 and no login is attempted; the limit holds per mailbox across merchants too."""
    async with imap.ImapServer({"shop@gmail.com": "the right one"}) as server:
        settings = settings.model_copy(
            update={"imap_port": server.port, "login_checks_per_minute": 3}
        )
        async with start_gateway(settings) as gw:
            guesser = await gw.merchant("Guesser", card=False)
            tries = [
                await gw.post("/api/cards", guesser.api_key, {**NEW_CARD, "app_password": f"p{i}"})
                for i in range(5)
            ]
            assert [t.status_code for t in tries] == [400, 400, 400, 429, 429]
            assert int(tries[3].headers["retry-after"]) >= 1
            other_mailbox = {**NEW_CARD, "gmail": "other@gmail.com"}
            assert (await gw.post("/api/cards", guesser.api_key, other_mailbox)).status_code == 429
            accomplice = await gw.merchant("Accomplice", card=False)
            same_mailbox = await gw.post("/api/cards", accomplice.api_key, NEW_CARD)
            assert same_mailbox.status_code == 429
            elsewhere = await gw.post(
                "/api/cards", accomplice.api_key, {**NEW_CARD, "gmail": "third@gmail.com"}
            )
            assert elsewhere.status_code == 400  # its own budget, another mailbox: checked
