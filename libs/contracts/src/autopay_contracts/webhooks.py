"""The webhook a merchant receives: which order events become webhooks, their `webhook-id`
and their body. The notifier sends them; the rebuild re-creates the pending ones after a Redis
loss, so both must agree to the byte.

Body (the original's webhook):
`{"order_id","status","amount","card_last4","gmail","client_user_id","client_user_data","paid_at"}`
with `amount` in so'm and `paid_at` as `YYYY-MM-DDTHH:MM:SS` Tashkent time (null unless paid).
`client_user_data` is `{}` when the order has none: the original's own receiver example reads it
with `data.get("client_user_data", {})` and then uses it as a dict, which `null` would break.
"""

from __future__ import annotations

import json
from typing import Any

from autopay_contracts.events import OrderCancelled, OrderExpired, OrderPaid
from autopay_contracts.local_time import tashkent_iso
from autopay_contracts.order_json import order_json

OrderEvent = OrderPaid | OrderExpired | OrderCancelled


def wants_webhook(event: OrderEvent) -> bool:
    """A paid order is always notified; expired/cancelled only when the order opted in."""
    order = event.order
    if not order.webhook_url:
        return False
    return event.event_name in order.notify_events


def delivery_id_for(event: OrderEvent) -> str:
    """The `webhook-id`: the order event's deterministic id, so retries and redeliveries of the
    same fact carry the same id and receivers can deduplicate on it."""
    return event.event_id


def webhook_payload(event: OrderEvent) -> dict[str, Any]:
    """The original's payload; a test-mode (sandbox) order's also carries `"test": true`."""
    order = event.order
    paid_at = tashkent_iso(event.paid_at) if isinstance(event, OrderPaid) else None
    payload = order_json(order, status=event.event_name, paid_at=paid_at)
    if payload["client_user_data"] is None:
        payload["client_user_data"] = {}
    if order.test_mode:
        payload["test"] = True
    return payload


def encode_body(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
