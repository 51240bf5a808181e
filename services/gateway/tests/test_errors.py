"""Every error is `{"detail": ...}`: 400 (not 422), 401, 429, 500, 503; Uzbek, English, Russian."""

from __future__ import annotations

import pytest

from autopay_gateway.messages import CATALOGUE, negotiate

GOOD = {"amount": 50037, "card_last4": "6412", "gmail": "karta@gmail.com"}


@pytest.mark.parametrize(
    ("body", "uzbek", "english"),
    [
        (
            {"card_last4": "6412", "gmail": "karta@gmail.com"},
            "Majburiy parametr yo'q: amount.",
            "Missing required parameter: amount.",
        ),
        ({**GOOD, "amount": "50037"}, "amount noto'g'ri", "Invalid amount"),
        ({**GOOD, "amount": -5}, "amount noto'g'ri", "Invalid amount"),
        ({**GOOD, "amount": True}, "amount noto'g'ri", "Invalid amount"),
        ({**GOOD, "amount": 500.5}, "amount noto'g'ri", "Invalid amount"),
        ({**GOOD, "amount_base": 50000}, "faqat bittasini", "either amount or amount_base"),
        ({**GOOD, "card_last4": "64a2"}, "card_last4 noto'g'ri", "Invalid card_last4"),
        ({**GOOD, "card_last4": "64123"}, "card_last4 noto'g'ri", "Invalid card_last4"),
        (
            {"amount": 1, "gmail": "karta@gmail.com"},
            "Majburiy parametr yo'q: card_last4.",
            "Missing required parameter: card_last4.",
        ),
        ({**GOOD, "gmail": "not-an-address"}, "gmail noto'g'ri", "Invalid gmail"),
        ({**GOOD, "client_user_id": ["x"]}, "client_user_id noto'g'ri", "Invalid client_user_id"),
        (
            {**GOOD, "client_user_data": [1, 2]},
            "client_user_data noto'g'ri",
            "Invalid client_user_data",
        ),
        (
            {**GOOD, "webhook_url": "http://botingiz.uz/webhook"},
            "webhook_url noto'g'ri",
            "Invalid webhook_url",
        ),
        ({**GOOD, "webhook_url": "ftp://x"}, "webhook_url noto'g'ri", "Invalid webhook_url"),
        ({**GOOD, "notify_events": ["refunded"]}, "notify_events", "Invalid notify_events"),
        # several mistakes: the first in the order of checks is the one reported
        (
            {**GOOD, "card_last4": "64a2", "notify_events": ["refunded"]},
            "card_last4 noto'g'ri",
            "Invalid card_last4",
        ),
        ([GOOD], "JSON obyekt kutilgan", "a JSON object is expected"),
    ],
)
async def test_bad_parameters_are_400_with_a_clear_message(gw, body, uzbek, english):
    shop = await gw.merchant()
    response = await gw.post("/api/create-payment", shop.api_key, body)
    assert response.status_code == 400
    assert set(response.json()) == {"detail"}
    assert uzbek in response.json()["detail"]
    en = await gw.post("/api/create-payment", shop.api_key, body, **{"accept-language": "en-US"})
    assert en.status_code == 400 and english in en.json()["detail"]
    assert (await gw.accounts.get_merchant(shop.merchant.merchant_id)).payments_used == 0


async def test_malformed_json_is_400_not_422(gw):
    shop = await gw.merchant()
    response = await gw.client.post(
        "/api/create-payment",
        content=b'{"amount": 50037, "card_last4": ',
        headers={"x-api-key": shop.api_key, "content-type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json() == {"detail": "So'rov tanasi noto'g'ri: JSON obyekt kutilgan."}
    missing = await gw.post("/api/check-payment", shop.api_key, {})
    assert missing.json() == {"detail": "Majburiy parametr yo'q: order_id."}
    path = await gw.client.delete("/api/cards/abc", headers={"x-api-key": shop.api_key})
    assert path.status_code == 400 and path.json() == {"detail": "Parametr noto'g'ri: card_id."}


async def test_http_loopback_webhook_only_when_allowed(gw):
    shop = await gw.merchant()
    body = {**GOOD, "webhook_url": "http://127.0.0.1:9999/hook"}
    assert (await gw.post("/api/create-payment", shop.api_key, body)).status_code == 200
    body = {**GOOD, "amount": 50038, "webhook_url": "http://10.0.0.1/hook"}
    assert (await gw.post("/api/create-payment", shop.api_key, body)).status_code == 400


EN = {"accept-language": "en"}
INTERNAL_WEBHOOKS = [
    "https://10.0.0.1/hook",
    "https://192.168.1.20/hook",
    "https://169.254.169.254/latest/meta-data",
    "https://[fd00:ec2::254]/",
    "https://[::ffff:127.0.0.1]/",
    "https://127.1/",
    "https://2130706433/",
    "https://0x7f.0.0.1/",
    "https://localhost/hook",
    "https://metadata.google.internal/computeMetadata/v1/",
    "https://printer.local/",
    "https://db.internal/",
]


async def test_a_webhook_url_on_an_internal_host_is_refused_at_create(
    settings, streams, start_gateway
):
    """Attack: a merchant (or a stolen key) aiming the platform's webhooks at its own network
    or a cloud metadata service. Refused with 400 before the order exists; a public host is
    fine. The notifier's delivery-time guard (which vets resolved names) stays behind it."""
    production = settings.model_copy(update={"allow_http_loopback_webhooks": False})
    async with start_gateway(production) as gw:
        shop = await gw.merchant()
        for amount, url in enumerate(INTERNAL_WEBHOOKS, start=50_100):
            body = {**GOOD, "amount": amount, "webhook_url": url}
            response = await gw.post("/api/create-payment", shop.api_key, body, **EN)
            assert response.status_code == 400, url
            assert "internal address" in response.json()["detail"], url
        assert await gw.orders.get("10001") is None
        body = {**GOOD, "amount": 50_099, "webhook_url": "https://shop.example.com/hook"}
        assert (await gw.post("/api/create-payment", shop.api_key, body)).status_code == 200


async def test_card_not_connected_is_400(gw):
    shop = await gw.merchant(card=False)
    response = await gw.post("/api/create-payment", shop.api_key, GOOD)
    assert response.status_code == 400
    assert "Karta ulanmagan" in response.json()["detail"]
    ru = await gw.post("/api/create-payment", shop.api_key, GOOD, **{"accept-language": "ru"})
    assert ru.json()["detail"].startswith("Карта не подключена")


async def test_missing_or_wrong_key_is_401(gw):
    missing = await gw.post("/api/create-payment", None, GOOD)
    assert missing.status_code == 401
    assert missing.json() == {
        "detail": "API kalit noto'g'ri yoki yo'q. x-api-key headerni tekshiring."
    }
    wrong = await gw.post("/api/check-payment", "ap_live_nope", {"order_id": "1"})
    assert wrong.status_code == 401
    en = await gw.get("/api/my-cards", "ap_live_nope", **{"accept-language": "en"})
    assert en.json() == {"detail": "API key is missing or invalid. Check the x-api-key header."}


async def test_rate_limit_per_key_is_429_with_retry_after(gw, redis_client):
    shop = await gw.merchant()
    merchant_key = f"{gw.settings.redis_prefix}:merchant:{shop.merchant.merchant_id}"
    await redis_client.hset(merchant_key, mapping={"rate_per_s": 0.5, "rate_burst": 3})
    other = await gw.merchant("Other", card=False)

    statuses = [(await gw.get("/api/subscription", shop.api_key)).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    limited = await gw.get("/api/subscription", shop.api_key)
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.json() == {"detail": "Juda ko'p so'rov. Biroz kuting va qayta urinib ko'ring."}
    assert (await gw.get("/api/subscription", other.api_key)).status_code == 200


async def test_internal_error_is_500_without_a_trace(gw, monkeypatch):
    shop = await gw.merchant()

    async def boom(order_id):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(gw.app.state.gateway.orders, "get", boom)
    response = await gw.post("/api/check-payment", shop.api_key, {"order_id": "10001"})
    assert response.status_code == 500
    assert response.json() == {"detail": "Server xatosi. @Autopaycardbot ga xabar bering."}
    assert "secret internals" not in response.text and "Traceback" not in response.text


async def test_unknown_route_and_method_are_json(gw):
    assert (await gw.client.get("/api/nope")).json() == {"detail": "Topilmadi."}
    wrong = await gw.client.get("/api/create-payment")
    assert wrong.status_code == 405 and wrong.json() == {"detail": "Bu metod ruxsat etilmagan."}


async def test_order_not_published_is_503_and_leaves_nothing_behind(
    settings, start_gateway, nats_client
):
    """Streams missing (NATS cannot acknowledge): the order is voided and the slot returned."""
    async with start_gateway(settings) as gw:
        shop = await gw.merchant()
        response = await gw.post("/api/create-payment", shop.api_key, GOOD)
        assert response.status_code == 503
        assert response.json()["detail"].startswith("Xizmat vaqtincha ishlamayapti")
        assert await gw.orders.get("10001") is None
        assert (await gw.accounts.get_merchant(shop.merchant.merchant_id)).payments_used == 0
        ready = await gw.client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["failing"] == ["streams"]


def test_every_message_has_three_languages():
    for code, texts in CATALOGUE.items():
        assert set(texts) == {"uz", "en", "ru"}, code


async def test_the_bot_handle_in_messages_comes_from_a_setting(settings, streams, start_gateway):
    async with start_gateway(settings.model_copy(update={"bot_handle": "@MyShopPayBot"})) as gw:
        lapsed = await gw.merchant(days=-1)
        body = {"amount": 50_037, "card_last4": "6412", "gmail": "karta@gmail.com"}
        response = await gw.post("/api/create-payment", lapsed.api_key, body)
    assert response.status_code == 403
    assert response.json() == {"detail": "Faol obuna yo'q! @MyShopPayBot da obuna oling."}


@pytest.mark.parametrize(
    ("header", "language"),
    [
        (None, "uz"),
        ("en", "en"),
        ("ru-RU,ru;q=0.9,en;q=0.8", "ru"),
        ("de-DE, en;q=0.5", "en"),
        ("fr", "uz"),
        ("uz, en;q=0.9", "uz"),
        ("en;q=0.2, ru;q=0.7", "ru"),
    ],
)
def test_language_negotiation(header, language):
    assert negotiate(header) == language


async def test_a_body_over_64_kib_is_413_with_or_without_content_length(gw):
    """Survives: a merchant (or a leaked key) posting a huge body to exhaust the gateway's
    memory; it is refused by its declared length, or while streaming when it declares none."""
    shop = await gw.merchant()
    big = b'{"amount": 50037, "card_last4": "6412", "gmail": "' + b"k" * 200_000 + b'"}'
    headers = {"x-api-key": shop.api_key, "content-type": "application/json"}
    declared = await gw.client.post("/api/create-payment", content=big, headers=headers)
    assert declared.status_code == 413
    assert declared.json() == {"detail": "So'rov tanasi juda katta: ko'pi bilan 64 KiB."}

    async def chunked():
        for start in range(0, len(big), 16_384):
            yield big[start : start + 16_384]

    streamed = await gw.client.post("/api/create-payment", content=chunked(), headers=headers)
    assert streamed.status_code == 413
    assert "content-length" not in streamed.request.headers
    assert (await gw.accounts.get_merchant(shop.merchant.merchant_id)).payments_used == 0

    small = await gw.post(
        "/api/create-payment",
        shop.api_key,
        {"amount": 50037, "card_last4": "6412", "gmail": "karta@gmail.com"},
    )
    assert small.status_code == 200


async def test_wrong_keys_are_throttled_per_address_and_never_enter_the_cache(gw):
    """Survives: someone guessing API keys at speed from one address, and a flood of wrong
    keys meant to fill the authentication cache and push the valid merchants out of it."""
    shop = await gw.merchant()
    await gw.post("/api/check-payment", shop.api_key, {"order_id": "1"})  # cached
    cached = len(gw.app.state.gateway.access._merchants)
    answers = [
        (await gw.post("/api/check-payment", f"ap_live_guess{i}", {"order_id": "1"}))
        for i in range(150)
    ]
    statuses = [a.status_code for a in answers]
    assert set(statuses) == {401, 429}
    assert statuses[: gw.settings.failed_auth_burst] == [401] * gw.settings.failed_auth_burst
    throttled = next(a for a in answers if a.status_code == 429)
    assert int(throttled.headers["retry-after"]) >= 1
    assert len(gw.app.state.gateway.access._merchants) == cached  # no wrong key was cached
    valid = await gw.post("/api/check-payment", shop.api_key, {"order_id": "1"})
    assert valid.status_code == 404  # a valid key still works (the order does not exist)


async def test_no_subscription_is_403_before_a_bad_card_or_parameter(gw):
    """The order of checks: subscription and quota (403) come before parameters and card
    connection (400), so a merchant learns first that it must pay."""
    lapsed = await gw.merchant("Lapsed", card=False, days=-1)
    unknown_card = {"amount": 50037, "card_last4": "9999", "gmail": "nobody@gmail.com"}
    for payload in (unknown_card, {**unknown_card, "card_last4": "12"}, {}):
        answer = await gw.post("/api/create-payment", lapsed.api_key, payload)
        assert answer.status_code == 403, (payload, answer.text)
    used_up = await gw.merchant("Used up", card=False, max_payments=0)
    answer = await gw.post("/api/create-payment", used_up.api_key, unknown_card)
    assert answer.status_code == 403
    active = await gw.merchant("Active", card=False)
    answer = await gw.post("/api/create-payment", active.api_key, unknown_card)
    assert answer.status_code == 400
