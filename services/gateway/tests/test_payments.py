"""create / check / cancel payment, as the original's code samples use them."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from autopay_contracts import OrderCancelled, OrderCreated, parse_event, sandbox_mailbox_id_for
from autopay_contracts.events import Credit
from autopay_contracts.local_time import TASHKENT

SEED_BODY = {
    "amount": 50037,
    "card_last4": "6412",
    "gmail": "karta@gmail.com",
    "client_user_id": "123456789",
    "client_user_data": {"plan": "premium"},
    "webhook_url": "https://botingiz.uz/webhook",
}


async def _last_event(nats_client, gw, subject: str):
    js = nats_client.jetstream()
    msg = await js.get_last_msg(gw.ns.stream_name("ORDERS"), subject)
    return parse_event(msg.data), msg.headers


async def test_seed_python_sample_creates_order_10001_and_publishes_it(gw, nats_client):
    shop = await gw.merchant()
    response = await gw.post("/api/create-payment", shop.api_key, SEED_BODY)

    assert response.status_code == 200, response.text
    assert response.json() == {"success": True, "order_id": "10001"}
    event, headers = await _last_event(
        nats_client, gw, gw.ns.order(shop.merchant.merchant_id, "created")
    )
    assert isinstance(event, OrderCreated)
    assert headers["Nats-Msg-Id"] == event.event_id
    order = event.order
    assert (order.order_id, order.amount_tiyin, order.card_last4, order.gmail) == (
        "10001",
        5_003_700,
        "6412",
        "karta@gmail.com",
    )
    assert order.client_user_id == "123456789"
    assert order.client_user_data == {"plan": "premium"}
    assert order.webhook_url == "https://botingiz.uz/webhook"
    assert order.expires_at - order.created_at == timedelta(seconds=300)
    assert not order.test_mode

    second = await gw.post("/api/create-payment", shop.api_key, {**SEED_BODY, "amount": 50038})
    assert second.json() == {"success": True, "order_id": "10002"}


async def test_seed_javascript_sample_and_integer_user_id(gw):
    shop = await gw.merchant()
    body = {
        "amount": 50012,
        "card_last4": "6412",
        "gmail": "Karta@Gmail.com",
        "client_user_id": 123456789,
        "webhook_url": "https://botingiz.uz/webhook",
    }
    response = await gw.post("/api/create-payment", shop.api_key, body)
    assert response.status_code == 200, response.text
    checked = await gw.post("/api/check-payment", shop.api_key, {"order_id": "10001"})
    assert checked.json() == {
        "order_id": "10001",
        "status": "waiting",
        "amount": 50012,
        "card_last4": "6412",
        "gmail": "karta@gmail.com",
        "client_user_id": "123456789",
        "client_user_data": None,
        "paid_at": None,
    }


async def test_amount_base_gets_a_free_unique_amount(gw):
    shop = await gw.merchant()
    body = {"amount_base": 50000, "card_last4": "6412", "gmail": "karta@gmail.com"}
    first = (await gw.post("/api/create-payment", shop.api_key, body)).json()
    second = (await gw.post("/api/create-payment", shop.api_key, body)).json()
    assert first["success"] and second["success"]
    assert 50001 <= first["amount"] <= 50099 and 50001 <= second["amount"] <= 50099
    assert first["amount"] != second["amount"]
    checked = await gw.post("/api/check-payment", shop.api_key, {"order_id": second["order_id"]})
    assert checked.json()["amount"] == second["amount"]


async def test_paid_order_shows_paid_at_in_tashkent_time(gw):
    shop = await gw.merchant()
    await gw.post("/api/create-payment", shop.api_key, SEED_BODY)
    record = await gw.orders.get("10001")
    paid_at = datetime(2026, 5, 16, 4, 30, 0, tzinfo=UTC)
    now = record.order.created_at + timedelta(seconds=20)
    credit = Credit(
        credit_id="cr-1",
        mailbox_id=record.order.mailbox_id,
        gmail="karta@gmail.com",
        card_last4="6412",
        amount_tiyin=5_003_700,
        occurred_at=record.order.created_at,
        received_at=now,
        format="test",
    )
    outcome = await gw.orders.match_credit(credit, now)
    assert outcome.kind == "matched"

    body = (await gw.post("/api/check-payment", shop.api_key, {"order_id": "10001"})).json()
    assert body["status"] == "paid"
    assert body["amount"] == 50037
    assert body["client_user_data"] == {"plan": "premium"}
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", body["paid_at"])
    expected = outcome.record.paid_at.astimezone(TASHKENT).strftime("%Y-%m-%d %H:%M:%S")
    assert body["paid_at"] == expected
    assert paid_at.astimezone(TASHKENT).strftime("%H:%M") == "09:30"

    refused = await gw.post("/api/cancel-payment", shop.api_key, {"order_id": "10001"})
    assert refused.status_code == 409
    assert refused.json() == {"detail": "To'lovni bekor qilib bo'lmaydi: holati paid."}


async def test_cancel_waiting_order_publishes_order_cancelled(gw, nats_client):
    shop = await gw.merchant()
    await gw.post("/api/create-payment", shop.api_key, SEED_BODY)

    response = await gw.post("/api/cancel-payment", shop.api_key, {"order_id": "10001"})
    assert response.status_code == 200
    assert response.json() == {"success": True, "order_id": "10001", "status": "cancelled"}
    checked = await gw.post("/api/check-payment", shop.api_key, {"order_id": "10001"})
    assert checked.json()["status"] == "cancelled"
    event, _ = await _last_event(
        nats_client, gw, gw.ns.order(shop.merchant.merchant_id, "cancelled")
    )
    assert isinstance(event, OrderCancelled) and event.order.order_id == "10001"
    again = await gw.post("/api/cancel-payment", shop.api_key, {"order_id": "10001"})
    assert again.status_code == 200


async def test_another_merchants_order_is_not_found(gw):
    owner = await gw.merchant("Owner")
    other = await gw.merchant("Other", card=False)
    await gw.post("/api/create-payment", owner.api_key, SEED_BODY)

    for path in ("/api/check-payment", "/api/cancel-payment"):
        response = await gw.post(path, other.api_key, {"order_id": "10001"})
        assert response.status_code == 404
        assert response.json() == {"detail": "To'lov topilmadi. order_id ni tekshiring."}
    unknown = await gw.post("/api/check-payment", owner.api_key, {"order_id": "99999"})
    assert unknown.status_code == 404
    assert (await gw.orders.get("10001")).status == "waiting"


async def test_reserved_amount_is_409_and_frees_the_payment_slot(gw):
    shop = await gw.merchant(max_payments=5)
    assert (await gw.post("/api/create-payment", shop.api_key, SEED_BODY)).status_code == 200

    clash = await gw.post("/api/create-payment", shop.api_key, SEED_BODY)
    assert clash.status_code == 409
    assert "band" in clash.json()["detail"]
    merchant = await gw.accounts.get_merchant(shop.merchant.merchant_id)
    assert merchant.payments_used == 1


async def test_subscription_limits_are_403_with_the_originals_message(gw):
    limited = await gw.merchant("Limited", max_payments=1)
    assert (await gw.post("/api/create-payment", limited.api_key, SEED_BODY)).status_code == 200
    over = await gw.post("/api/create-payment", limited.api_key, {**SEED_BODY, "amount": 50038})
    assert over.status_code == 403
    assert over.json() == {
        "detail": "To'lovlar limiti tugadi! @Autopaycardbot da obunani yangilang."
    }

    lapsed = await gw.merchant("Lapsed", card=False, days=0)
    # a mailbox is one merchant's: the lapsed merchant has a mailbox of its own
    await gw.accounts.add_card(lapsed.merchant.merchant_id, "7777", "lapsed@gmail.com")
    body = {**SEED_BODY, "card_last4": "7777", "gmail": "lapsed@gmail.com"}
    response = await gw.post("/api/create-payment", lapsed.api_key, body)
    assert response.status_code == 403
    assert response.json() == {"detail": "Faol obuna yo'q! @Autopaycardbot da obuna oling."}
    english = await gw.post(
        "/api/create-payment", lapsed.api_key, body, **{"accept-language": "en"}
    )
    assert english.json() == {"detail": "No active subscription! Subscribe in @Autopaycardbot."}


async def test_test_mode_key_creates_test_mode_orders(gw):
    """A test-mode merchant pays only into its sandbox cards; its orders are test orders under
    the sandbox mailbox id."""
    shop = await gw.merchant(test_mode=True)
    assert shop.api_key.startswith("ap_test_")
    assert (await gw.post("/api/create-payment", shop.api_key, SEED_BODY)).status_code == 400
    mid = shop.merchant.merchant_id
    await gw.sandbox_cards.add(mid, SEED_BODY["card_last4"], SEED_BODY["gmail"])
    response = await gw.post("/api/create-payment", shop.api_key, SEED_BODY)
    assert response.status_code == 200, response.text
    order = (await gw.orders.get(response.json()["order_id"])).order
    assert order.test_mode
    assert order.mailbox_id == sandbox_mailbox_id_for(mid, SEED_BODY["gmail"])


async def test_subscription_and_my_cards(gw, redis_client):
    shop = await gw.merchant(tariff_name="Asosiy", max_payments=100_000)
    await gw.accounts.add_card(shop.merchant.merchant_id, "8675", "karta2@gmail.com")
    await gw.post("/api/create-payment", shop.api_key, SEED_BODY)

    sub = (await gw.get("/api/subscription", shop.api_key)).json()
    assert sub["active"] is True
    assert (sub["tariff_name"], sub["payments_used"], sub["max_payments"]) == ("Asosiy", 1, 100000)
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", sub["expires_at"])

    cards = await gw.accounts.list_cards(shop.merchant.merchant_id)
    health_key = f"{gw.settings.redis_prefix}:mailbox:{cards[0].mailbox_id}:health"
    await redis_client.hset(
        health_key, mapping={"status": "connected", "last_mail_at": "1778905800"}
    )
    body = (await gw.get("/api/my-cards", shop.api_key)).json()
    assert body == {
        "cards": [
            {
                "id": cards[0].card_id,
                "card_last4": "6412",
                "gmail": "karta@gmail.com",
                "status": "connected",
                "last_mail_at": "2026-05-16 09:30:00",
            },
            {"id": cards[1].card_id, "card_last4": "8675", "gmail": "karta2@gmail.com"},
        ]
    }


async def test_settings_give_payments_a_default_webhook_and_events(gw):
    shop = await gw.merchant()
    key = shop.api_key
    assert (await gw.get("/api/settings", key)).json() == {
        "webhook_url": None,
        "notify_events": ["paid"],
    }
    body = {"webhook_url": "https://shop.example.com/hook", "notify_events": ["cancelled"]}
    put = await gw.client.put("/api/settings", json=body, headers={"x-api-key": key})
    assert put.status_code == 200, put.text
    assert put.json()["notify_events"] == ["paid", "cancelled"]

    plain = {"amount": 50_037, "card_last4": "6412", "gmail": "karta@gmail.com"}
    created = (await gw.post("/api/create-payment", key, plain)).json()
    order = (await gw.orders.get(created["order_id"])).order
    assert order.webhook_url == "https://shop.example.com/hook"
    assert order.notify_events == ("paid", "cancelled")

    own = {
        **plain,
        "amount": 50_038,
        "webhook_url": "https://other.example/h",
        "notify_events": ["expired"],
    }
    created = (await gw.post("/api/create-payment", key, own)).json()
    order = (await gw.orders.get(created["order_id"])).order
    assert order.webhook_url == "https://other.example/h"
    assert order.notify_events == ("paid", "expired")

    bad = await gw.post(
        "/api/create-payment", key, {**plain, "amount": 50_039, "notify_events": ["refunded"]}
    )
    assert bad.status_code == 400
    internal = await gw.client.put(
        "/api/settings", json={"webhook_url": "https://10.1.2.3/x"}, headers={"x-api-key": key}
    )
    assert internal.status_code == 400
    cleared = await gw.client.put(
        "/api/settings", json={"webhook_url": None}, headers={"x-api-key": key}
    )
    assert cleared.json() == {"success": True, "webhook_url": None, "notify_events": ["paid"]}
