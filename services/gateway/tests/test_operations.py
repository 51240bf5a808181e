"""/healthz, /readyz, /metrics."""

from __future__ import annotations

from autopay_runtime.logging import configure_logging


async def test_health_and_readiness(gw):
    assert (await gw.client.get("/healthz")).json() == {"status": "ok"}
    ready = await gw.client.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ready"}


async def test_metrics_count_requests_by_route_and_status(gw):
    shop = await gw.merchant()
    body = {"amount": 777, "card_last4": "6412", "gmail": "karta@gmail.com"}
    await gw.post("/api/create-payment", shop.api_key, body)
    await gw.post("/api/create-payment", shop.api_key, body)
    text = (await gw.client.get("/metrics")).text
    assert (
        'autopay_gateway_requests_total{method="POST",route="/api/create-payment",status="409"}'
        in text
    )
    assert (
        'autopay_gateway_request_seconds_count{method="POST",route="/api/create-payment"}' in text
    )


async def test_logs_carry_the_order_id_but_never_the_key_or_body(gw, capsys):
    configure_logging("gateway")
    shop = await gw.merchant()
    body = {
        "amount": 778,
        "card_last4": "6412",
        "gmail": "karta@gmail.com",
        "client_user_data": {"secret_note": "private-data-xyz"},
    }
    assert (await gw.post("/api/create-payment", shop.api_key, body)).status_code == 200
    out = capsys.readouterr()
    logs = out.out + out.err
    assert "10001" in logs and "payment created" in logs
    assert shop.api_key not in logs and "private-data-xyz" not in logs
