"""The sandbox through the whole stack (`autopay dev up`): separate processes, real IMAP, NATS,
Redis, webhooks (issue #7).

Attacks: a test key registering the live mailbox with a wrong password (squatting it); a live
bank mail for the amount a test order waits for; a sandbox transfer for a live order's amount.
"""

from __future__ import annotations

import json
import random
import time

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from autopay_testing.waiting import eventually

from .conftest import autopay

pytestmark = pytest.mark.e2e


def _client(stack, key: str) -> httpx.Client:
    return httpx.Client(base_url=stack.info["gateway_url"], headers={"x-api-key": key}, timeout=10)


def _create(client: httpx.Client, card: dict, amount: int, receiver) -> str:
    body = {"amount": amount, **card, "webhook_url": receiver.url}
    response = client.post("/api/create-payment", json=body)
    assert response.status_code == 200, response.text
    return response.json()["order_id"]


def _transfer(client: httpx.Client, card: dict, amount: int) -> dict:
    response = client.post("/api/sandbox/transfer", json={"amount": amount, **card})
    assert response.status_code == 200, response.text
    return response.json()


def _status(client: httpx.Client, order_id: str) -> str:
    response = client.post("/api/check-payment", json={"order_id": order_id})
    assert response.status_code == 200, response.text
    return response.json()["status"]


def _amount() -> int:
    return random.randint(10_000, 900_000)


def test_a_sandbox_transfer_pays_a_test_order_with_a_test_webhook(stack, receiver):
    card = stack.info["card"]
    with _client(stack, stack.info["test_api_key"]) as sandbox:
        amount = _amount()
        order_id = _create(sandbox, card, amount, receiver)
        _transfer(sandbox, card, amount)
        delivered = eventually(lambda: receiver.for_order(order_id), 30, "the test webhook")
        assert _status(sandbox, order_id) == "paid"
    payload = Webhook(stack.info["webhook_secret"]).verify(
        delivered[0]["body"], delivered[0]["headers"]
    )
    assert payload["test"] is True
    assert (payload["status"], payload["amount"]) == ("paid", amount)


def test_live_mail_never_pays_a_test_order_nor_a_transfer_a_live_one(stack, receiver):
    """A live order and a test order wait for the same amount on the same card and mailbox. A
    sandbox transfer pays the test one only; a live bank mail then pays the live one only."""
    card = stack.info["card"]
    amount = _amount()
    with (
        _client(stack, stack.info["api_key"]) as live,
        _client(stack, stack.info["test_api_key"]) as sandbox,
    ):
        live_order = _create(live, card, amount, receiver)
        test_order = _create(sandbox, card, amount, receiver)

        _transfer(sandbox, card, amount)
        eventually(lambda: receiver.for_order(test_order), 30, "the test order paid")
        time.sleep(1.0)
        assert _status(live, live_order) == "waiting"
        assert receiver.for_order(live_order) == []

        second_test = _create(sandbox, card, amount + 1, receiver)
        stack.send_credit(amount)  # the live bank mail
        eventually(lambda: receiver.for_order(live_order), 30, "the live order paid")
        stack.send_credit(amount + 1)  # a live mail for the other test order's amount
        third_live = _create(live, card, amount + 2, receiver)
        stack.send_credit(amount + 2)
        eventually(lambda: receiver.for_order(third_live), 30, "a later live order paid")
        assert _status(sandbox, second_test) == "waiting"
        body = json.loads(receiver.for_order(live_order)[0]["body"])
        assert "test" not in body


def test_a_test_key_cannot_squat_the_live_mailbox(stack, receiver):
    """The test key registers the live card's mailbox with a wrong password: it gets a sandbox
    card, and the live mailbox keeps its password and keeps paying."""
    card = stack.info["card"]
    with (
        _client(stack, stack.info["test_api_key"]) as sandbox,
        _client(stack, stack.info["api_key"]) as live,
    ):
        body = {**card, "gmail": card["gmail"].upper(), "app_password": "not the password"}
        squat = sandbox.post("/api/cards", json=body)
        assert squat.status_code == 200, squat.text
        for listed in live.get("/api/my-cards").json()["cards"]:
            assert sandbox.delete(f"/api/cards/{listed['id']}").status_code == 404
        time.sleep(1.0)  # a re-registration would have reached mail-ingest by now
        cards = live.get("/api/my-cards").json()["cards"]
        assert [c.get("status") for c in cards] == ["connected"]
        amount = _amount()
        order_id = _create(live, card, amount, receiver)
        stack.send_credit(amount)
        eventually(lambda: receiver.for_order(order_id), 30, "the live order still paid")


def test_a_live_key_gets_403_on_the_sandbox(stack):
    with _client(stack, stack.info["api_key"]) as live:
        body = {"amount": 1000, **stack.info["card"]}
        response = live.post("/api/sandbox/transfer", json=body)
    assert response.status_code == 403


def test_dev_sandbox_merchant(stack, receiver):
    out = autopay("dev", "sandbox-merchant", "--state-dir", str(stack.state_dir), "--json")
    created = json.loads(out.strip().splitlines()[-1])
    assert set(created) == {"merchant_id", "test_api_key", "card"}
    assert set(created["card"]) == {"card_last4", "gmail"}
    assert created["test_api_key"].startswith("ap_test_")
    with _client(stack, created["test_api_key"]) as sandbox:
        amount = _amount()
        order_id = _create(sandbox, created["card"], amount, receiver)
        _transfer(sandbox, created["card"], amount)
        eventually(lambda: receiver.for_order(order_id), 30, "the sandbox merchant's webhook")
        assert _status(sandbox, order_id) == "paid"
