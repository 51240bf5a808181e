"""The merchant API through the whole stack (issue #8). A payment that did not match appears in
the transactions ledger, and a manual match pays the order and fires its webhook; settings give
payments a default webhook URL and opted-in `cancelled` webhooks.

Through real processes: the bank mail goes through mail-ingest, the matcher decides it
`unmatched` and its ledger consumer writes the record; the gateway's manual match pays the
order, and the notifier delivers the signed webhook. The same for the sandbox (a test key's
transfer). After Redis is flushed, the rebuild restores the ledger with its manual match.
"""

from __future__ import annotations

import json
import random

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from autopay_testing.redis_cluster import sync_client
from autopay_testing.waiting import eventually

from .conftest import autopay

pytestmark = pytest.mark.e2e


def _client(stack, key: str) -> httpx.Client:
    return httpx.Client(base_url=stack.info["gateway_url"], headers={"x-api-key": key}, timeout=10)


def _unmatched(client: httpx.Client, amount: int) -> dict:
    def find() -> dict | None:
        page = client.get("/api/transactions", params={"status": "unmatched"}).json()
        return next((t for t in page["transactions"] if t["amount"] == amount), None)

    return eventually(find, 30, f"an unmatched {amount} in the ledger")


def _pay_by_hand(stack, receiver, key: str, send) -> tuple[str, dict, dict]:
    """An order for X, a transfer of X - 37, the ledger shows it, the merchant matches it."""
    card = stack.info["card"]
    amount = random.randint(100_000, 900_000)
    with _client(stack, key) as client:
        created = client.post(
            "/api/create-payment", json={"amount": amount, **card, "webhook_url": receiver.url}
        )
        assert created.status_code == 200, created.text
        order_id = created.json()["order_id"]
        send(amount - 37)
        record = _unmatched(client, amount - 37)
        assert record["order_id"] is None and record["card_last4"] == card["card_last4"]
        matched = client.post(
            f"/api/transactions/{record['id']}/match", json={"order_id": order_id}
        )
        assert matched.status_code == 200, matched.text
        assert matched.json()["difference"] == -37
        webhook = eventually(lambda: receiver.for_order(order_id), 30, "the webhook")[0]
        shown = client.get(f"/api/transactions/{record['id']}").json()["transaction"]
        assert (shown["status"], shown["order_id"], shown["manual"]) == ("matched", order_id, True)
        status = client.post("/api/check-payment", json={"order_id": order_id}).json()["status"]
        assert status == "paid"
    return order_id, record, webhook


def test_a_wrong_amount_shows_up_unmatched_and_a_manual_match_fires_the_webhook(stack, receiver):
    order_id, _, webhook = _pay_by_hand(stack, receiver, stack.info["api_key"], stack.send_credit)
    payload = Webhook(stack.info["webhook_secret"]).verify(webhook["body"], webhook["headers"])
    assert (payload["order_id"], payload["status"]) == (order_id, "paid")
    assert "test" not in payload


def test_the_same_in_the_sandbox(stack, receiver):
    key = stack.info["test_api_key"]
    card = stack.info["card"]

    def transfer(amount: int) -> None:
        with _client(stack, key) as client:
            response = client.post("/api/sandbox/transfer", json={"amount": amount, **card})
            assert response.status_code == 200, response.text

    _, record, webhook = _pay_by_hand(stack, receiver, key, transfer)
    assert json.loads(webhook["body"])["test"] is True
    with _client(stack, stack.info["api_key"]) as live:  # the live ledger never shows it
        assert live.get(f"/api/transactions/{record['id']}").status_code == 404


def test_the_rebuild_restores_the_ledger_and_the_manual_match(stack, receiver):
    order_id, record, _ = _pay_by_hand(stack, receiver, stack.info["api_key"], stack.send_credit)
    r = sync_client(stack.info["redis_url"])
    prefix = stack.run_file()["env"]["redis_prefix"]
    ledger_keys = list(r.scan_iter(match=f"{prefix}:{{l:*"))
    assert ledger_keys
    r.delete(*ledger_keys)  # the ledger lost
    with _client(stack, stack.info["api_key"]) as client:
        assert client.get(f"/api/transactions/{record['id']}").status_code == 404
        out = autopay("admin", "rebuild-orders", "--state-dir", str(stack.state_dir))
        assert json.loads(out.strip().splitlines()[-1])["ledger"] > 0
        shown = client.get(f"/api/transactions/{record['id']}").json()["transaction"]
    assert (shown["status"], shown["order_id"], shown["manual"]) == ("matched", order_id, True)


def test_settings_default_webhook_and_an_opted_in_cancelled_webhook(stack, receiver):
    """A payment created without a webhook_url is notified at the merchant's default URL; one
    that opted in to `cancelled` gets a webhook when it is cancelled."""
    card = stack.info["card"]
    with _client(stack, stack.info["api_key"]) as client:
        put = client.put("/api/settings", json={"webhook_url": receiver.url})
        assert put.status_code == 200, put.text
        try:
            amount = random.randint(100_000, 900_000)
            body = {"amount": amount, **card, "notify_events": ["cancelled"]}
            order_id = client.post("/api/create-payment", json=body).json()["order_id"]
            cancelled = client.post("/api/cancel-payment", json={"order_id": order_id})
            assert cancelled.status_code == 200, cancelled.text
            webhook = eventually(lambda: receiver.for_order(order_id), 30, "the cancelled webhook")
            payload = Webhook(stack.info["webhook_secret"]).verify(
                webhook[0]["body"], webhook[0]["headers"]
            )
            assert (payload["status"], payload["paid_at"]) == ("cancelled", None)

            paid = client.post("/api/create-payment", json={"amount": amount + 1, **card}).json()
            stack.send_credit(amount + 1)
            eventually(lambda: receiver.for_order(paid["order_id"]), 30, "the default URL used")
        finally:
            client.put("/api/settings", json={"webhook_url": None})


def _paid_with_webhook(stack, receiver, client) -> tuple[str, dict]:
    amount = random.randint(100_000, 900_000)
    body = {"amount": amount, **stack.info["card"], "webhook_url": receiver.url}
    order_id = client.post("/api/create-payment", json=body).json()["order_id"]
    stack.send_credit(amount)
    return order_id, eventually(lambda: receiver.for_order(order_id), 30, "the webhook")[0]


def test_the_delivery_log_and_a_redelivery_with_the_same_webhook_id(stack, receiver):
    with _client(stack, stack.info["api_key"]) as client:
        order_id, first = _paid_with_webhook(stack, receiver, client)
        webhook_id = first["headers"]["webhook-id"]

        def logged() -> dict | None:
            found = client.get(f"/api/orders/{order_id}/deliveries").json()["deliveries"]
            return found[0] if found and found[0]["state"] == "delivered" else None

        delivery = eventually(logged, 10, "the delivery recorded")
        assert (delivery["webhook_id"], delivery["event"], delivery["state"]) == (
            webhook_id,
            "paid",
            "delivered",
        )
        assert delivery["log"][0]["status_code"] == 200 and delivery["log"][0]["latency_ms"] >= 0
        again = client.post(f"/api/orders/{order_id}/redeliver")
        assert again.status_code == 200, again.text
        assert again.json()["webhook_ids"] == [webhook_id]

        def twice() -> list[dict] | None:
            found = receiver.for_order(order_id)
            return found if len(found) >= 2 else None

        both = eventually(twice, 30, "the webhook again")
        assert {r["headers"]["webhook-id"] for r in both} == {webhook_id}

        def both_logged() -> list[dict] | None:  # recorded just after the receiver answers
            path = f"/api/orders/{order_id}/deliveries"
            attempts = client.get(path).json()["deliveries"][0]["log"]
            return attempts if len(attempts) == 2 else None

        attempts = eventually(both_logged, 10, "both attempts in the log")
        assert [a["status_code"] for a in attempts] == [200, 200]


def test_a_signed_test_event(stack, receiver):
    with _client(stack, stack.info["api_key"]) as client:
        sent = client.post("/api/webhooks/test", json={"url": receiver.url})
        assert sent.status_code == 200, sent.text
        webhook_id = sent.json()["webhook_id"]

        def arrived():
            return [r for r in receiver.requests if r["headers"].get("webhook-id") == webhook_id]

        [request] = eventually(arrived, 30, "the test event")
    payload = Webhook(stack.info["webhook_secret"]).verify(request["body"], request["headers"])
    assert payload["type"] == "webhook.test" and payload["test"] is True


def test_after_a_rotation_webhooks_verify_with_both_secrets(stack, receiver):
    old = stack.info["webhook_secret"]
    with _client(stack, stack.info["api_key"]) as client:
        assert client.get("/api/webhook-secret").json() == {"webhook_secret": old}
        rotated = client.post("/api/webhook-secret/rotate").json()
        new = rotated["webhook_secret"]
        assert new != old and new.startswith("whsec_") and rotated["previous_valid_until"]
        assert client.get("/api/webhook-secret").json() == {"webhook_secret": new}
        _, request = _paid_with_webhook(stack, receiver, client)
    for secret in (old, new):
        Webhook(secret).verify(request["body"], request["headers"])
