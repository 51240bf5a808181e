"""The webhook tools' contract: who may read and redeliver what, and each refusal."""

from __future__ import annotations

from datetime import UTC, datetime

from autopay_store.deliveries import DeliveryKeys, DeliveryStore, NewDelivery

EN = {"accept-language": "en"}


async def paid_delivery(gw, redis_client, merchant_id: str, order_id: str) -> str:
    """A delivery as the notifier records it for a paid order."""
    store = DeliveryStore(redis_client, DeliveryKeys(gw.settings.redis_prefix))
    delivery_id = f"wh-{order_id}"
    await store.enqueue(
        NewDelivery(
            delivery_id=delivery_id,
            merchant_id=merchant_id,
            order_id=order_id,
            order_event="paid",
            url="https://shop.example.com/hook",
            body="{}",
            created_at=datetime.now(UTC).timestamp(),
        ),
        lease_until=None,
    )
    return delivery_id


async def test_the_log_and_redelivery_are_the_order_owners_only(gw, redis_client):
    shop = await gw.merchant()
    other = await gw.merchant("Other", card=False)
    body = {"amount": 50_037, "card_last4": "6412", "gmail": "karta@gmail.com"}
    order_id = (await gw.post("/api/create-payment", shop.api_key, body)).json()["order_id"]

    empty = await gw.post(f"/api/orders/{order_id}/redeliver", shop.api_key, **EN)
    assert empty.status_code == 404
    assert empty.json() == {"detail": "No webhook was sent for this payment."}

    delivery_id = await paid_delivery(gw, redis_client, shop.merchant.merchant_id, order_id)
    log = (await gw.get(f"/api/orders/{order_id}/deliveries", shop.api_key)).json()
    assert [d["webhook_id"] for d in log["deliveries"]] == [delivery_id]
    assert log["deliveries"][0]["state"] == "pending"

    for path in (f"/api/orders/{order_id}/deliveries", "/api/orders/99999/deliveries"):
        assert (await gw.get(path, other.api_key)).status_code == 404
    stolen = await gw.post(f"/api/orders/{order_id}/redeliver", other.api_key)
    assert stolen.status_code == 404
    wrong_event = await gw.post(f"/api/orders/{order_id}/redeliver", shop.api_key, {"event": "x"})
    assert wrong_event.status_code == 400
    again = await gw.post(f"/api/orders/{order_id}/redeliver", shop.api_key, {"event": "paid"})
    assert again.json() == {"success": True, "order_id": order_id, "webhook_ids": [delivery_id]}


async def test_a_test_event_needs_a_public_url(gw):
    shop = await gw.merchant()
    none = await gw.post("/api/webhooks/test", shop.api_key, **EN)
    assert none.status_code == 400
    assert none.json() == {"detail": "No webhook_url: give one in the request or in /api/settings."}
    internal = await gw.post("/api/webhooks/test", shop.api_key, {"url": "https://10.0.0.7/x"})
    assert internal.status_code == 400
    sent = await gw.post("/api/webhooks/test", shop.api_key, {"url": "https://shop.example/x"})
    assert sent.status_code == 200 and sent.json()["webhook_id"].startswith("test_")
    assert (await gw.post("/api/webhooks/test", None)).status_code == 401


async def test_the_secret_is_read_and_rotated_by_its_merchant(gw):
    shop = await gw.merchant()
    assert (await gw.get("/api/webhook-secret", shop.api_key)).json() == {
        "webhook_secret": shop.webhook_secret
    }
    rotated = (await gw.post("/api/webhook-secret/rotate", shop.api_key)).json()
    secrets = await gw.accounts.webhook_secrets(shop.merchant.merchant_id, datetime.now(UTC))
    assert secrets == [rotated["webhook_secret"], shop.webhook_secret]
    assert (await gw.get("/api/webhook-secret", "ap_live_wrong")).status_code == 401
