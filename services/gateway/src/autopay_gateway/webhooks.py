"""Use cases of the webhook tools: the delivery log of an order, redelivery with the same
`webhook-id`, a signed test event, and the signing secret (read, rotate).

The gateway never sends a webhook itself: it reads and writes the notifier's delivery records
(`autopay_store.deliveries`), and the notifier makes the attempt (signed with every valid
secret, through its SSRF guard), as for any delivery.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from autopay_gateway.clock import tashkent
from autopay_gateway.messages import ApiError
from autopay_store.accounts import SECRET_ROTATION_GRACE, Accounts, Merchant
from autopay_store.deliveries import DeliveryStore, NewDelivery

TEST_EVENT = "test"


def _at(epoch: object) -> str | None:
    try:
        value = float(epoch)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if value <= 0:
        return None
    return tashkent(datetime.fromtimestamp(value, UTC))


def _int(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None


def delivery_view(delivery: dict[str, Any]) -> dict[str, Any]:
    state = delivery.get("state")
    return {
        "webhook_id": delivery["delivery_id"],
        "event": delivery["order_event"],
        "url": delivery.get("url"),
        "state": state,
        "attempts": _int(delivery.get("attempts")) or 0,
        "last_status": _int(delivery.get("last_status")),
        "last_error": delivery.get("last_error") or None,
        "last_attempt_at": _at(delivery.get("last_attempt_at")),
        "next_attempt_at": _at(delivery.get("next_attempt_at")) if state == "pending" else None,
        "log": [
            {
                "attempt": entry.get("attempt"),
                "at": _at(entry.get("at")),
                "status_code": entry.get("status_code"),
                "error": entry.get("error"),
                "latency_ms": entry.get("duration_ms"),
                "outcome": entry.get("outcome"),
                "next_attempt_at": _at(entry.get("next_attempt_at")),
            }
            for entry in delivery.get("log", [])
        ],
    }


class Webhooks:
    def __init__(self, deliveries: DeliveryStore, accounts: Accounts) -> None:
        self.deliveries = deliveries
        self.accounts = accounts

    async def log(self, merchant: Merchant, order_id: str) -> dict[str, Any]:
        found = await self.deliveries.order_deliveries(order_id)
        return {
            "order_id": order_id,
            "deliveries": [
                delivery_view(d) for d in found if d.get("merchant_id") == merchant.merchant_id
            ],
        }

    async def redeliver(
        self, merchant: Merchant, order_id: str, event: str | None, now: datetime
    ) -> dict[str, Any]:
        """Send the order's webhook(s) again, each with its own `webhook-id`."""
        found = [
            d
            for d in await self.deliveries.order_deliveries(order_id)
            if d.get("merchant_id") == merchant.merchant_id
            and (event is None or d["order_event"] == event)
        ]
        if not found:
            raise ApiError(404, "no_deliveries")
        queued = []
        for delivery in found:
            verdict = await self.deliveries.redeliver(delivery["delivery_id"], now.timestamp())
            if verdict == "busy":
                raise ApiError(409, "delivery_in_progress")
            if verdict == "ok":
                queued.append(delivery["delivery_id"])
        return {"success": True, "order_id": order_id, "webhook_ids": queued}

    async def send_test(self, merchant: Merchant, url: str | None, now: datetime) -> dict:
        """A signed test event (`{"type": "webhook.test", "test": true, ...}`) to `url`, or to
        the merchant's default webhook URL."""
        target = url or merchant.webhook_url
        if not target:
            raise ApiError(400, "no_webhook_url")
        webhook_id = f"test_{uuid.uuid4().hex}"
        body = {
            "type": "webhook.test",
            "test": True,
            "webhook_id": webhook_id,
            "message": "AutoPay test webhook",
            "sent_at": tashkent(now),
        }
        await self.deliveries.enqueue(
            NewDelivery(
                delivery_id=webhook_id,
                merchant_id=merchant.merchant_id,
                order_id=webhook_id,
                order_event=TEST_EVENT,
                url=target,
                body=json.dumps(body, ensure_ascii=False, separators=(",", ":")),
                created_at=now.timestamp(),
            ),
            lease_until=None,
        )
        return {"success": True, "webhook_id": webhook_id, "url": target}

    async def secret(self, merchant: Merchant, now: datetime) -> dict[str, Any]:
        secrets = await self.accounts.webhook_secrets(merchant.merchant_id, now)
        if not secrets:
            raise ApiError(404, "not_found")
        return {"webhook_secret": secrets[0]}

    async def rotate_secret(self, merchant: Merchant, now: datetime) -> dict[str, Any]:
        """A new signing secret; the old one still signs (and verifies) for 24 h."""
        secret = await self.accounts.rotate_webhook_secret(merchant.merchant_id, now)
        return {
            "success": True,
            "webhook_secret": secret,
            "previous_valid_until": tashkent(now + SECRET_ROTATION_GRACE),
        }
