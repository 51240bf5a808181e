"""`Idempotency-Key` on POST: the first answer is replayed; another body with the key is 409."""

from __future__ import annotations

BODY = {"amount": 50037, "card_last4": "6412", "gmail": "karta@gmail.com"}


async def test_same_key_same_body_replays_the_first_response(gw):
    shop = await gw.merchant()
    first = await gw.post("/api/create-payment", shop.api_key, BODY, **{"idempotency-key": "k1"})
    assert first.json() == {"success": True, "order_id": "10001"}

    reordered = dict(reversed(list(BODY.items())))
    again = await gw.post(
        "/api/create-payment", shop.api_key, reordered, **{"idempotency-key": "k1"}
    )
    assert again.status_code == 200
    assert again.json() == {"success": True, "order_id": "10001"}
    assert again.headers["idempotent-replayed"] == "true"
    assert (await gw.accounts.get_merchant(shop.merchant.merchant_id)).payments_used == 1

    fresh = await gw.post("/api/create-payment", shop.api_key, {**BODY, "amount": 50038})
    assert fresh.json()["order_id"] == "10002"


async def test_same_key_other_body_is_409(gw):
    shop = await gw.merchant()
    await gw.post("/api/create-payment", shop.api_key, BODY, **{"idempotency-key": "k2"})
    other = {**BODY, "amount": 50038}
    conflict = await gw.post(
        "/api/create-payment", shop.api_key, other, **{"idempotency-key": "k2"}
    )
    assert conflict.status_code == 409
    assert conflict.json() == {"detail": "Bu Idempotency-Key boshqa so'rov bilan ishlatilgan."}
    elsewhere = await gw.post(
        "/api/cancel-payment", shop.api_key, {"order_id": "10001"}, **{"idempotency-key": "k2"}
    )
    assert elsewhere.status_code == 409
    assert (await gw.orders.get("10001")).status == "waiting"


async def test_keys_are_per_merchant_and_errors_replay_too(gw):
    a = await gw.merchant("A")
    b = await gw.merchant("B", card=False)
    first = await gw.post("/api/create-payment", a.api_key, BODY, **{"idempotency-key": "same"})
    assert first.status_code == 200
    not_connected = await gw.post(
        "/api/create-payment", b.api_key, BODY, **{"idempotency-key": "same"}
    )
    assert not_connected.status_code == 400
    await gw.accounts.add_card(b.merchant.merchant_id, "1111", "b@gmail.com")
    replayed = await gw.post("/api/create-payment", b.api_key, BODY, **{"idempotency-key": "same"})
    assert replayed.status_code == 400
    assert replayed.json() == not_connected.json()


async def test_server_errors_are_not_remembered(settings, start_gateway):
    """A 503 (the event was not acknowledged, the order withdrawn) is not kept as the key's
    answer: the claim is open to the next retry at once, which runs again."""
    import json

    async with start_gateway(settings) as gw:
        shop = await gw.merchant()
        failed = await gw.post(
            "/api/create-payment", shop.api_key, BODY, **{"idempotency-key": "r"}
        )
        assert failed.status_code == 503
        claims = [k async for k in gw.accounts.redis.scan_iter(f"{settings.redis_prefix}*idem*")]
        records = [json.loads(await gw.accounts.redis.get(k)) for k in claims]
        assert [(r["state"], r["at"]) for r in records] in ([], [("pending", 0)])
        again = await gw.post("/api/create-payment", shop.api_key, BODY, **{"idempotency-key": "r"})
        assert again.status_code == 503  # ran again (JetStream still refuses), not a replay
        assert "idempotent-replayed" not in again.headers


async def test_check_payment_ignores_the_key_and_always_shows_the_current_status(gw):
    """Survives: a client (or a proxy) that sends an Idempotency-Key on every request; a
    replayed check-payment must never freeze a stale `waiting` for 24 h."""
    shop = await gw.merchant()
    await gw.post("/api/create-payment", shop.api_key, BODY)
    check = {"order_id": "10001"}
    first = await gw.post("/api/check-payment", shop.api_key, check, **{"idempotency-key": "c1"})
    assert first.json()["status"] == "waiting"
    cancelled = await gw.post("/api/cancel-payment", shop.api_key, check)
    assert cancelled.json()["status"] == "cancelled"
    again = await gw.post("/api/check-payment", shop.api_key, check, **{"idempotency-key": "c1"})
    assert again.status_code == 200
    assert again.json()["status"] == "cancelled"
    assert "idempotent-replayed" not in again.headers


async def test_a_create_that_failed_after_writing_its_order_is_answered_by_the_retry(gw):
    """Survives: a Redis master failing over during a create (seen in the cluster chaos run).
    The card script wrote the order, the write of its locator did not, and the call failed with
    a 5xx. The retry with the same key answers with that order (its locator and `order.created`
    made sure of) instead of `409 amount_reserved` for its own amount."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    shop = await gw.merchant()
    book = gw.app.state.gateway.payments.orders
    real = book.create
    failed: list[str] = []

    async def create_then_fail(order):
        await real(order)
        await book.redis.delete(book.keys.order_locator(order.order_id))  # the lost write
        failed.append(order.order_id)
        raise RedisConnectionError("the locator's node went away")

    book.create = create_then_fail
    try:
        first = await gw.post("/api/create-payment", shop.api_key, BODY, **{"idempotency-key": "f"})
    finally:
        book.create = real
    assert first.status_code >= 500 and failed == ["10001"]
    assert await gw.orders.get("10001") is None  # unreachable by its id

    retry = await gw.post("/api/create-payment", shop.api_key, BODY, **{"idempotency-key": "f"})
    assert retry.status_code == 200, retry.text
    assert retry.json() == {"success": True, "order_id": "10001"}
    record = await gw.orders.get("10001")
    assert record is not None and record.status == "waiting"  # its locator is back
    replay = await gw.post("/api/create-payment", shop.api_key, BODY, **{"idempotency-key": "f"})
    assert replay.json() == retry.json() and replay.headers["idempotent-replayed"] == "true"
