"""`make bench BENCH=load` at a tiny size, through a real dev stack: every payment's webhook is
received and verified, the figures, the series and its plot are written. No figure is asserted
against a target (speed is never tested); what can fail is the accounting of errors."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime

import httpx
from standardwebhooks.webhooks import Webhook

from autopay_devtools.bench import load
from autopay_devtools.bench.receiver import Arrival, WebhookReceiver

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_load_bench_pays_every_order_and_writes_its_plot(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("AUTOPAY_BENCH_OUT", str(tmp_path))
    for name, value in {
        "RATE": 8.0,
        "SECONDS": 2.0,
        "WARMUP_S": 0.5,
        "MAILBOXES": 3,
        "CARDS": 6,
        "MERCHANTS": 2,
        "STEPS": [4.0],
        "STEP_S": 1.0,
    }.items():
        monkeypatch.setattr(load, name, value)
    figures = load.run()
    assert figures["e2e_load_payments"] == 20
    assert figures["e2e_load_sustained_rate_per_s"] in {0.0, 4.0}  # the step ran
    assert figures["e2e_load_p99_ms_at_4_per_s"] > 0
    assert figures["e2e_load_errors"] == 0
    assert figures["e2e_load_webhook_repeats"] == 0
    assert 0 < figures["e2e_load_p50_ms"] <= figures["e2e_load_p99_ms"]
    assert figures["e2e_load_p99_ms"] < figures["e2e_load_payment_p99_ms"]
    rows = json.loads((tmp_path / load.SERIES_FILE).read_text())["payments"]
    assert len(rows) == 20 and all(r["webhook_ms"] is not None for r in rows)
    assert (tmp_path / load.PLOT_FILE).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def _payment(n: int, measured: bool = True, **kwargs) -> load.Payment:
    shop = load.Shop("1", "key", SECRET)
    return load.Payment(n, n / 10, shop, "a@gmail.com", "1000", measured, **kwargs)


def test_every_failed_payment_is_an_error_and_only_paid_ones_are_timed() -> None:
    payments = [
        _payment(0, measured=False, create_ms=5.0, webhook_ms=900.0, total_ms=905.0),
        _payment(1, create_ms=4.0, webhook_ms=10.0, total_ms=14.0),
        _payment(2, create_ms=4.0, error="no webhook within the timeout"),
        _payment(3, measured=False, error="create 500 boom"),
        _payment(4, create_ms=6.0, webhook_ms=20.0, total_ms=26.0),
    ]
    found = load.figures(payments, repeats=1)
    assert found["e2e_load_errors"] == 2  # the warm-up's failure counts too
    assert found["e2e_load_max_ms"] == 20.0  # the warm-up's 900 ms is not in the figures
    assert found["e2e_load_p50_ms"] in {10.0, 20.0}
    assert found["e2e_load_webhook_repeats"] == 1


def test_a_webhook_for_another_amount_or_unsigned_is_an_error() -> None:
    paid = {"status": "paid", "amount": 12_345}
    assert load._paid_error(Arrival(0.0, True, paid), "7", 12_345) is None
    assert "says paid 12345, not paid 12346" in load._paid_error(
        Arrival(0.0, True, paid), "7", 12_346
    )
    assert "signature" in load._paid_error(Arrival(0.0, False, paid), "7", 12_345)
    pending = paid | {"status": "cancelled"}
    assert load._paid_error(Arrival(0.0, True, pending), "7", 12_345) is not None


def test_the_receiver_verifies_each_merchants_signature_over_real_http() -> None:
    async def scenario() -> tuple[Arrival, Arrival, int]:
        receiver = await WebhookReceiver({"1": SECRET}).start()
        signer = Webhook(SECRET)
        try:
            async with httpx.AsyncClient() as client:
                for order_id, secret_ok in (("10", True), ("11", False), ("10", True)):
                    body = json.dumps({"order_id": order_id, "status": "paid"})
                    stamp = datetime.now(UTC)
                    signature = signer.sign(f"msg_{order_id}", stamp, body)
                    if not secret_ok:
                        signature = Webhook("whsec_" + "A" * 32).sign("m", stamp, body)
                    headers = {
                        "webhook-id": f"msg_{order_id}",
                        "webhook-timestamp": str(int(stamp.timestamp())),
                        "webhook-signature": signature,
                        "content-type": "application/json",
                    }
                    response = await client.post(receiver.url("1"), content=body, headers=headers)
                    assert response.status_code == 200
            good = await asyncio.wait_for(receiver.expect("10"), 5)
            forged = await asyncio.wait_for(receiver.expect("11"), 5)
            return good, forged, receiver.repeats
        finally:
            await receiver.close()

    started = time.perf_counter()
    good, forged, repeats = asyncio.run(scenario())
    assert good.verified and good.at >= started and good.payload["order_id"] == "10"
    assert not forged.verified
    assert repeats == 1
