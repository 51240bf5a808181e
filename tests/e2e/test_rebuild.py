"""Redis is lost; `autopay admin rebuild-orders` brings the orders back from the streams."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys

import pytest
import redis
import redis.asyncio as aioredis

from autopay_store.keys import Keys
from autopay_store.orders import OrderBook
from autopay_testing.waiting import eventually

pytestmark = pytest.mark.e2e


def _create(stack, receiver, amount: int) -> str:
    response = stack.post(
        "/api/create-payment",
        {
            "amount": amount,
            "card_last4": stack.info["card"]["card_last4"],
            "gmail": stack.info["card"]["gmail"],
            "webhook_url": receiver.url,
        },
    )
    assert response.status_code == 200, response.text
    return response.json()["order_id"]


def _rebuild(stack) -> dict:
    command = ["admin", "rebuild-orders", "--state-dir", str(stack.state_dir)]
    result = subprocess.run(
        [sys.executable, "-m", "autopay_cli.main", *command],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


async def _read_back(redis_url: str, keys: Keys, order_ids: list[str]):
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        book = OrderBook(client, keys)
        records = [await book.get(order_id) for order_id in order_ids]
        paid = records[0]
        decided = paid and await client.hget(
            keys.card(paid.order.mailbox_id, paid.order.card_last4, "credits"), paid.credit_id
        )
        return records, decided, await book.next_order_id()
    finally:
        await client.aclose()


def test_orders_come_back_after_redis_is_flushed(stack, receiver):
    base = 80_000 + random.randint(1, 49) * 2
    paid_amount, waiting_amount = base, base + 1
    paid_id = _create(stack, receiver, paid_amount)
    waiting_id = _create(stack, receiver, waiting_amount)
    stack.send_credit(paid_amount)
    # the webhook is sent from the ORDERS stream: `order.paid` is stored before Redis goes
    eventually(lambda: receiver.for_order(paid_id), 40, f"webhook for {paid_id}")
    before = stack.post("/api/check-payment", {"order_id": paid_id}).json()
    assert before["status"] == "paid"

    redis_url = stack.info["redis_url"]
    with redis.Redis.from_url(redis_url) as client:
        client.flushall()
        assert client.exists(f"ap:order-card:{paid_id}") == 0
    keys = Keys("ap")  # the dev stack's prefix

    report = _rebuild(stack)
    assert report["orders"].get("paid", 0) >= 1 and report["orders"].get("waiting", 0) >= 1

    (paid, waiting), decided, next_id = asyncio.run(
        _read_back(redis_url, keys, [paid_id, waiting_id])
    )
    assert paid is not None and waiting is not None
    assert (paid.status, paid.order.amount_tiyin) == ("paid", paid_amount * 100)
    assert paid.credit_id and paid.paid_at and paid.ended_at == paid.paid_at
    assert (waiting.status, waiting.order.amount_tiyin) == ("waiting", waiting_amount * 100)
    assert json.loads(decided) == {"kind": "matched", "order_id": paid_id}
    assert int(next_id) > max(int(paid_id), int(waiting_id))

    again = _rebuild(stack)
    assert again["decisions"] == 0 and again["orders"] == report["orders"]
