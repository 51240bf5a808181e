"""An order nobody pays ends `expired` after the (short, configured) window."""

from __future__ import annotations

import pytest

from autopay_testing.waiting import eventually

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack_env() -> dict[str, str]:
    return {"AUTOPAY_PAYMENT_TTL_SECONDS": "2"}


def test_unpaid_order_expires(stack, receiver):
    response = stack.post(
        "/api/create-payment",
        {
            "amount": 70_011,
            "card_last4": stack.info["card"]["card_last4"],
            "gmail": stack.info["card"]["gmail"],
            "webhook_url": receiver.url,
        },
    )
    assert response.status_code == 200, response.text
    order_id = response.json()["order_id"]
    assert stack.post("/api/check-payment", {"order_id": order_id}).json()["status"] == "waiting"

    def expired():
        body = stack.post("/api/check-payment", {"order_id": order_id}).json()
        return body if body["status"] == "expired" else None

    body = eventually(expired, 30, f"order {order_id} expired")
    assert body["paid_at"] is None
    assert receiver.for_order(order_id) == []
