"""create-payment takes the subscription slot and the order id in one round trip: a failure of
either side still leaves the slot counted only for a stored order."""

from __future__ import annotations

BODY = {"amount": 50037, "card_last4": "6412", "gmail": "karta@gmail.com"}


async def test_a_failed_order_id_returns_the_payment_slot(gw):
    shop = await gw.merchant(max_payments=5)
    sequence = gw.orders.keys.order_sequence
    await gw.orders.redis.set(sequence, "not a number")
    response = await gw.post("/api/create-payment", shop.api_key, BODY)
    assert response.status_code == 500
    assert (await gw.accounts.get_merchant(shop.merchant.merchant_id)).payments_used == 0
    await gw.orders.redis.delete(sequence)
    created = await gw.post("/api/create-payment", shop.api_key, BODY)
    assert created.status_code == 200 and created.json()["order_id"] == "10001"
    assert (await gw.accounts.get_merchant(shop.merchant.merchant_id)).payments_used == 1


async def test_a_refused_slot_creates_no_order_and_only_skips_an_id(gw):
    shop = await gw.merchant(max_payments=1)
    assert (await gw.post("/api/create-payment", shop.api_key, BODY)).status_code == 200
    over = await gw.post("/api/create-payment", shop.api_key, {**BODY, "amount": 50038})
    assert over.status_code == 403
    assert await gw.orders.get("10002") is None
    merchant = await gw.accounts.get_merchant(shop.merchant.merchant_id)
    assert merchant.payments_used == 1
