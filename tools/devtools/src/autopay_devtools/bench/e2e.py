"""Mail appended to the mailbox → webhook received, through the whole dev stack (targets:
`e2e_p50_ms` ≤ 100, `e2e_p99_ms` ≤ 300).

A detached dev stack in a temporary state dir (four service processes, NATS, Redis, the demo
IMAP server); a local webhook receiver; for each payment: create it over the API, APPEND the
bank's e-mail over a kept-open IMAP connection, and time from the APPEND's OK to the webhook's
arrival. Payments run one after another, so the figure is latency, not throughput.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from datetime import datetime
from pathlib import Path

import aioimaplib
import httpx

from autopay_bankmail.synth import uzcard_credit_email
from autopay_cli.config import load_settings
from autopay_cli.operations import Operator
from autopay_contracts.local_time import TASHKENT
from autopay_devtools.bench import dev_stack, percentile
from autopay_devtools.bench.receiver import WebhookReceiver

PAYMENTS = int(os.environ.get("AUTOPAY_BENCH_E2E_PAYMENTS", "60"))
WARMUP = 5


def _log(message: str) -> None:
    print(f"[bench e2e] {message}", file=sys.stderr, flush=True)


async def _measure(stack: dict) -> list[float]:
    receiver = await WebhookReceiver({"demo": stack["webhook_secret"]}).start()
    webhook_url = receiver.url("demo")
    imap = aioimaplib.IMAP4(host=stack["imap"]["host"], port=stack["imap"]["port"], timeout=10)
    await imap.wait_hello_from_server()
    await imap.login(stack["imap"]["user"], stack["imap"]["password"])
    api = httpx.AsyncClient(
        base_url=stack["gateway_url"], headers={"x-api-key": stack["api_key"]}, timeout=10
    )
    card = stack["card"]
    latencies: list[float] = []
    try:
        for n in range(PAYMENTS + WARMUP):
            response = await api.post(
                "/api/create-payment",
                json={
                    "amount_base": 10_000 + 100 * n,
                    "card_last4": card["card_last4"],
                    "gmail": card["gmail"],
                    "webhook_url": webhook_url,
                },
            )
            response.raise_for_status()
            order_id, amount = response.json()["order_id"], response.json()["amount"]
            arrival = receiver.expect(order_id)
            mail = uzcard_credit_email(
                to=card["gmail"],
                amount_tiyin=amount * 100,
                card_last4=card["card_last4"],
                occurred_at=datetime.now(TASHKENT),
            )
            appended = await imap.append(mail, mailbox="INBOX")
            sent = time.perf_counter()
            if appended.result != "OK":
                raise RuntimeError(f"APPEND refused: {appended.lines!r}")
            received = await asyncio.wait_for(arrival, timeout=30)
            if not received.verified:
                raise RuntimeError(f"the webhook of order {order_id} failed verification")
            if n >= WARMUP:
                latencies.append((received.at - sent) * 1000)
    finally:
        await api.aclose()
        await imap.logout()
        await receiver.close()
    return latencies


async def _lift_rate_limit(state_dir: Path, merchant_id: str) -> None:
    """The demo merchant's 20 requests/s would throttle the loop, not measure the system."""
    async with Operator(load_settings(state_dir)) as op:
        await op.accounts.set_rate_limit(merchant_id, per_s=10_000, burst=10_000)


def run() -> dict:
    with dev_stack("e2e") as (stack, state_dir):
        asyncio.run(_lift_rate_limit(state_dir, stack["merchant_id"]))
        latencies = asyncio.run(_measure(stack))
    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
    _log(f"{len(latencies)} payments: mail → webhook p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    return {"e2e_p50_ms": round(p50, 1), "e2e_p99_ms": round(p99, 1)}
