"""Every endpoint's common contract: 401 without a valid key, 429 past the key's rate limit
(with Retry-After), each in Uzbek by default and in English and Russian on request; and the
403 on create-payment and the sandbox."""

from __future__ import annotations

import pytest

from autopay_gateway.messages import CATALOGUE

ENDPOINTS = [
    ("POST", "/api/create-payment"),
    ("POST", "/api/check-payment"),
    ("POST", "/api/cancel-payment"),
    ("GET", "/api/my-cards"),
    ("GET", "/api/subscription"),
    ("POST", "/api/cards"),
    ("DELETE", "/api/cards/1"),
    ("POST", "/api/sandbox/transfer"),
    ("GET", "/api/transactions"),
    ("GET", "/api/transactions/cr1"),
    ("POST", "/api/transactions/cr1/match"),
    ("POST", "/api/transactions/cr1/dismiss"),
    ("GET", "/api/settings"),
    ("PUT", "/api/settings"),
    ("GET", "/api/orders/10001/deliveries"),
    ("POST", "/api/orders/10001/redeliver"),
    ("POST", "/api/webhooks/test"),
    ("GET", "/api/webhook-secret"),
    ("POST", "/api/webhook-secret/rotate"),
]


async def call(gw, method: str, path: str, key: str | None, language: str | None = None):
    headers = {} if key is None else {"x-api-key": key}
    if language:
        headers["accept-language"] = language
    return await gw.client.request(method, path, json={}, headers=headers)


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
async def test_every_endpoint_is_401_without_a_key_in_three_languages(gw, method, path):
    expected = CATALOGUE["unauthorized"]
    for language in ("uz", "en", "ru"):
        response = await call(gw, method, path, None, language if language != "uz" else None)
        assert response.status_code == 401, (path, response.text)
        assert response.json() == {"detail": expected[language]}
    wrong = await call(gw, method, path, "ap_live_not-a-key")
    assert wrong.status_code == 401


async def test_every_endpoint_is_429_past_the_rate_limit(gw):
    shop = await gw.merchant()
    await gw.accounts.set_rate_limit(shop.merchant.merchant_id, per_s=0.001, burst=1)
    first = await call(gw, "GET", "/api/subscription", shop.api_key)
    assert first.status_code == 200
    for method, path in ENDPOINTS:
        response = await call(gw, method, path, shop.api_key, "ru")
        assert response.status_code == 429, (path, response.text)
        assert int(response.headers["retry-after"]) >= 1
        assert response.json() == {"detail": CATALOGUE["rate_limited"]["ru"]}


async def test_403_before_parameters_on_create_payment_and_the_sandbox(gw):
    lapsed = await gw.merchant(days=-1)
    for language, fragment in (("en", "No active subscription"), ("ru", "Нет активной подписки")):
        response = await call(gw, "POST", "/api/create-payment", lapsed.api_key, language)
        assert response.status_code == 403 and fragment in response.json()["detail"]
    live = await gw.merchant("Live", card=False)
    response = await call(gw, "POST", "/api/sandbox/transfer", live.api_key, "en")
    assert response.status_code == 403
