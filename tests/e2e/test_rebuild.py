"""Redis is lost (FLUSHALL); `autopay admin rebuild` brings everything back from JetStream: the
accounts from the ACCOUNTS bucket (so the old API keys work and the cards are there), the
orders, decisions and ledger from the streams, the usage counted from ORDERS. A waiting order
is still paid by its bank mail afterwards, new order ids continue above the old ones, and a
second rebuild changes nothing.

Survives: Redis losing every key while the services run (they reconnect by themselves)."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys

import pytest

from autopay_runtime.connections import open_redis
from autopay_store.keys import Keys
from autopay_store.orders import OrderBook
from autopay_testing.redis_cluster import sync_client
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
    command = ["admin", "rebuild", "--state-dir", str(stack.state_dir)]
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
    client = open_redis(redis_url)
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


def _view(stack) -> dict:
    """What the merchant sees through the API (health fields left out: they come back with
    the next IMAP session, not from the rebuild)."""
    cards = stack.http.get("/api/my-cards")
    assert cards.status_code == 200, cards.text
    ledger = stack.http.get("/api/transactions", params={"limit": 100}).json()["transactions"]
    return {
        "cards": [{k: c[k] for k in ("id", "card_last4", "gmail")} for c in cards.json()["cards"]],
        "subscription": stack.http.get("/api/subscription").json(),
        "ledger": sorted((t["id"], t["status"], t["order_id"]) for t in ledger),
    }


def test_everything_comes_back_after_redis_is_flushed(stack, receiver):
    base = 80_000 + random.randint(1, 49) * 2
    paid_amount, waiting_amount = base, base + 1
    paid_id = _create(stack, receiver, paid_amount)
    waiting_id = _create(stack, receiver, waiting_amount)
    stack.send_credit(paid_amount)
    stack.send_credit(base + 7_000)  # matches nothing: an unmatched record in the ledger
    # the webhook is sent from the ORDERS stream: `order.paid` is stored before Redis goes
    eventually(lambda: receiver.for_order(paid_id), 40, f"webhook for {paid_id}")
    eventually(
        lambda: any(t[1] == "unmatched" for t in _view(stack)["ledger"]), 30, "the unmatched"
    )
    statuses = {
        order_id: stack.post("/api/check-payment", {"order_id": order_id}).json()["status"]
        for order_id in (paid_id, waiting_id)
    }
    assert statuses == {paid_id: "paid", waiting_id: "waiting"}
    # a webhook still being retried when Redis goes: its endpoint answers 503 for now
    receiver.status = 503
    failing_id = _create(stack, receiver, base + 5)
    stack.send_credit(base + 5)
    first = eventually(lambda: receiver.for_order(failing_id), 40, "a failed attempt")[0]
    webhook_id = first["headers"]["webhook-id"]
    eventually(
        lambda: any(t[2] == failing_id for t in _view(stack)["ledger"]), 30, "its ledger record"
    )
    before = _view(stack)

    redis_url = stack.info["redis_url"]
    with sync_client(redis_url) as client:
        client.flushall()  # on a Cluster: every master
        assert client.exists(f"ap:order-card:{paid_id}") == 0
    # every merchant locked out (once the gateway's one-second key cache has let go)
    eventually(lambda: stack.http.get("/api/my-cards").status_code == 401, 10, "a lockout")
    keys = Keys("ap")  # the dev stack's prefix

    report = _rebuild(stack)
    assert (
        report["accounts"]["restored"] > 0
        and stack.info["merchant_id"] in (report["accounts"]["merchants"])
    )
    assert report["orders"].get("paid", 0) >= 2 and report["orders"].get("waiting", 0) >= 1
    assert report["deliveries"] == 1  # the failing one: the delivered ones are not sent again

    # the old key works, and the merchant sees what it saw
    eventually(lambda: stack.http.get("/api/my-cards").status_code == 200, 10, "the old key")
    assert _view(stack) == before
    for order_id, status in statuses.items():
        assert stack.post("/api/check-payment", {"order_id": order_id}).json()["status"] == status

    (paid, waiting), decided, next_id = asyncio.run(
        _read_back(redis_url, keys, [paid_id, waiting_id])
    )
    assert paid is not None and waiting is not None
    assert (paid.status, paid.order.amount_tiyin) == ("paid", paid_amount * 100)
    assert paid.credit_id and paid.paid_at and paid.ended_at == paid.paid_at
    assert (waiting.status, waiting.order.amount_tiyin) == ("waiting", waiting_amount * 100)
    assert json.loads(decided) == {"kind": "matched", "order_id": paid_id}
    assert int(next_id) > max(int(paid_id), int(waiting_id))

    # the pending webhook goes out once its endpoint works, with the same webhook-id
    attempts = len(receiver.for_order(failing_id))
    receiver.status = 200
    eventually(lambda: len(receiver.for_order(failing_id)) > attempts, 30, "the retried webhook")
    assert {r["headers"]["webhook-id"] for r in receiver.for_order(failing_id)} == {webhook_id}
    assert len(receiver.for_order(paid_id)) == 1  # a delivered one is not sent again

    again = _rebuild(stack)
    assert again["accounts"]["restored"] == 0 and again["usage"] == {}
    assert again["decisions"] == 0 and again["orders"] == report["orders"]
    assert again["deliveries"] == 0

    # the waiting order is still paid by its bank mail, and a new order gets a higher id
    stack.send_credit(waiting_amount)
    eventually(lambda: receiver.for_order(waiting_id), 60, f"webhook for {waiting_id}")
    assert stack.post("/api/check-payment", {"order_id": waiting_id}).json()["status"] == "paid"
    newer = _create(stack, receiver, base + 3)
    assert int(newer) > max(int(paid_id), int(waiting_id))
