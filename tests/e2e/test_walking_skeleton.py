"""A payment from `create-payment` through a bank e-mail to a signed webhook (issue #2)."""

from __future__ import annotations

import json
import os
import random
import re
import signal

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from autopay_runtime.settings import nats_servers
from autopay_testing.waiting import eventually

from .conftest import nats_cluster_size

pytestmark = pytest.mark.e2e

SEED_FIELDS = {"card_last4", "gmail", "client_user_id", "client_user_data"}
STACK_KEYS = {
    "gateway_url",
    "api_key",
    "test_api_key",
    "webhook_secret",
    "card",
    "imap",
    "nats_url",
    "redis_url",
}


def _create(stack, receiver, amount: int | None = None, amount_base: int | None = None):
    """Create a payment with the original API's fields; with `amount_base`, the server picks the
    amount. Returns (order_id, amount)."""
    body = {
        "card_last4": stack.info["card"]["card_last4"],
        "gmail": stack.info["card"]["gmail"],
        "client_user_id": "123456789",
        "client_user_data": {"plan": "premium"},
        "webhook_url": receiver.url,
    }
    body |= {"amount": amount} if amount_base is None else {"amount_base": amount_base}
    response = stack.post("/api/create-payment", body)
    assert response.status_code == 200, response.text
    created = response.json()
    assert created["success"] is True and re.fullmatch(r"\d+", created["order_id"])
    return created["order_id"], created.get("amount", amount)


def _pay_and_confirm(stack, receiver, amount: int | None = None, amount_base: int | None = None):
    order_id, amount = _create(stack, receiver, amount, amount_base)
    stack.send_credit(amount)
    delivered = eventually(lambda: receiver.for_order(order_id), 40, f"webhook for {order_id}")
    return order_id, amount, delivered[0]


def test_stack_json_has_every_key(stack):
    assert set(stack.info) >= STACK_KEYS
    assert set(stack.info["card"]) == {"card_last4", "gmail"}
    assert set(stack.info["imap"]) == {"host", "port", "user", "password", "tls"}
    for url in (*nats_servers(stack.info["nats_url"]), stack.info["redis_url"]):
        assert not url.endswith((":4222", ":6379", ":6379/0"))
    if nats_cluster_size():  # every node, where it listens and which process it is
        nodes = stack.info["nats_nodes"]
        assert len(nodes) == nats_cluster_size()
        assert [node["url"] for node in nodes] == nats_servers(stack.info["nats_url"])
        assert all(isinstance(node["pid"], int) for node in nodes)
    else:
        assert "nats_nodes" not in stack.info


def test_payment_completes_with_signed_webhook(stack, receiver):
    amount = 50_000 + random.randint(1, 99)
    order_id, _, request = _pay_and_confirm(stack, receiver, amount)

    payload = Webhook(stack.info["webhook_secret"]).verify(request["body"], request["headers"])
    assert payload["order_id"] == order_id
    assert payload["status"] == "paid"
    assert payload["amount"] == amount
    assert {k: payload[k] for k in SEED_FIELDS} == {
        "card_last4": stack.info["card"]["card_last4"],
        "gmail": stack.info["card"]["gmail"],
        "client_user_id": "123456789",
        "client_user_data": {"plan": "premium"},
    }
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}", payload["paid_at"])

    checked = stack.post("/api/check-payment", {"order_id": order_id}).json()
    assert checked["status"] == "paid"
    assert checked["amount"] == amount
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", checked["paid_at"])
    assert checked["paid_at"].replace(" ", "T") == payload["paid_at"]

    cards = stack.http.get("/api/my-cards").json()["cards"]
    demo = next(c for c in cards if c["card_last4"] == stack.info["card"]["card_last4"])
    assert demo["gmail"] == stack.info["card"]["gmail"] and isinstance(demo["id"], int)
    assert demo["status"] == "connected" and demo["last_mail_at"]

    tampered = dict(request["headers"])
    with pytest.raises(Exception):  # noqa: B017 - any verification failure
        Webhook(stack.info["webhook_secret"]).verify(request["body"] + b" ", tampered)


@pytest.mark.parametrize("service", ["gateway", "mail-ingest", "matcher", "notifier"])
def test_killed_service_is_restarted_and_next_payment_completes(stack, receiver, service):
    before = stack.run_file()
    os.kill(before["pids"][service], signal.SIGKILL)

    def restarted() -> bool:
        run = stack.run_file()
        if run["pids"][service] == before["pids"][service]:
            return False
        port = run[f"{service}_port"]
        try:
            return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    eventually(restarted, 60, f"{service} restarted and ready")
    order_id, amount, request = _pay_and_confirm(stack, receiver, amount_base=60_000)
    assert 60_001 <= amount <= 60_099
    assert json.loads(request["body"])["status"] == "paid"
    assert stack.post("/api/check-payment", {"order_id": order_id}).json()["status"] == "paid"
