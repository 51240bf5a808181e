"""/healthz, /readyz, /metrics."""

from __future__ import annotations

import random
import string

from structlog.contextvars import merge_contextvars
from structlog.testing import capture_logs


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


def gateway_series(text: str) -> set[str]:
    return {
        line.rsplit(" ", 1)[0]
        for line in text.splitlines()
        if line.startswith("autopay_gateway_request")
    }


async def test_client_chosen_methods_and_paths_add_no_metric_series(gw):
    """Survives: a client sending 2 000 requests with random methods and paths, which would
    otherwise grow the metrics (and the gateway's memory) without bound."""
    rng = random.Random(7)

    async def burst(count: int) -> None:
        for _ in range(count):
            method = "".join(rng.choices(string.ascii_uppercase, k=rng.randint(3, 12)))
            path = "/" + "".join(rng.choices(string.ascii_lowercase, k=rng.randint(1, 20)))
            await gw.client.request(method, rng.choice([path, "/api/check-payment"]))

    await burst(20)  # adds the fixed `other` / `unmatched` series once
    before = gateway_series((await gw.client.get("/metrics")).text)
    await burst(2_000)
    after = gateway_series((await gw.client.get("/metrics")).text)
    assert after == before, sorted(after - before)[:5]
    assert any('method="other"' in series for series in after)


async def test_logs_carry_the_order_id_but_never_the_key_or_body(gw):
    shop = await gw.merchant()
    body = {
        "amount": 778,
        "card_last4": "6412",
        "gmail": "karta@gmail.com",
        "client_user_data": {"secret_note": "private-data-xyz"},
    }
    with capture_logs(processors=[merge_contextvars]) as logs:
        assert (await gw.post("/api/create-payment", shop.api_key, body)).status_code == 200
    created = [entry for entry in logs if entry["event"] == "payment created"]
    assert created and created[0]["order_id"] == "10001"
    assert shop.api_key not in repr(logs) and "private-data-xyz" not in repr(logs)
