"""An order as a merchant reads it: the body of the API's check answer and of the webhook.

`{"order_id","status","amount","card_last4","gmail","client_user_id","client_user_data","paid_at"}`,
in that order, with `amount` in whole so'm. The caller chooses the status and how `paid_at` is
written (the API and the webhook each keep the time format merchants already parse).
"""

from __future__ import annotations

from typing import Any

from autopay_contracts.events import Order
from autopay_contracts.money import whole_som


def order_json(order: Order, *, status: str, paid_at: str | None) -> dict[str, Any]:
    return {
        "order_id": order.order_id,
        "status": status,
        "amount": whole_som(order.amount_tiyin),
        "card_last4": order.card_last4,
        "gmail": order.gmail,
        "client_user_id": order.client_user_id,
        "client_user_data": order.client_user_data,
        "paid_at": paid_at,
    }
