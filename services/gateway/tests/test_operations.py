"""/healthz, /readyz, and the metrics (served on their own internal port, not the public one)."""

from __future__ import annotations

import random
import string

import httpx
from prometheus_client import REGISTRY, generate_latest
from structlog.contextvars import merge_contextvars
from structlog.testing import capture_logs

from autopay_testing.servers import free_port

from .conftest import gateway_process, ready


async def test_health_and_readiness(gw):
    assert (await gw.client.get("/healthz")).json() == {"status": "ok"}
    ready = await gw.client.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ready"}


async def test_the_public_app_does_not_serve_metrics(gw):
    assert (await gw.client.get("/metrics")).status_code == 404


async def test_metrics_count_requests_by_route_and_status(gw):
    shop = await gw.merchant()
    body = {"amount": 777, "card_last4": "6412", "gmail": "karta@gmail.com"}
    created = {"mode": "live"}
    before = REGISTRY.get_sample_value("autopay_gateway_orders_created_total", created)
    await gw.post("/api/create-payment", shop.api_key, body)
    await gw.post("/api/create-payment", shop.api_key, body)  # 409: the amount is reserved
    text = generate_latest().decode()
    after = REGISTRY.get_sample_value("autopay_gateway_orders_created_total", created)
    assert after == before + 1
    assert (
        'autopay_gateway_requests_total{method="POST",route="/api/create-payment",status="409"}'
        in text
    )
    histogram = "autopay_gateway_request_duration_seconds_count"
    assert f'{histogram}{{method="POST",route="/api/create-payment"}}' in text


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
    before = gateway_series(generate_latest().decode())
    await burst(2_000)
    after = gateway_series(generate_latest().decode())
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


async def test_a_gateway_process_serves_metrics_on_its_internal_port_only(settings, streams):
    """The real process: `/metrics` answers on `metrics_port` and is a 404 on the public port,
    so nothing on the Internet-facing listener reads the platform's figures."""
    public, internal = free_port(), free_port()
    with gateway_process(settings, public, AUTOPAY_METRICS_PORT=str(internal)) as process:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{public}", timeout=5) as client:
            await ready(client, process)
            await client.get("/healthz")
            scraped = await client.get(f"http://127.0.0.1:{internal}/metrics")
            assert scraped.status_code == 200
            assert "autopay_gateway_requests_total" in scraped.text
            assert (await client.get("/metrics")).status_code == 404
