"""Use cases of the merchant's account: its subscription, and its settings (the defaults of
payments created without `webhook_url` / `notify_events`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from autopay_gateway.access import Access
from autopay_gateway.clock import tashkent
from autopay_gateway.requests import Settings as SettingsCommand
from autopay_store.accounts import Accounts, Merchant


def subscription_view(merchant: Merchant, now: datetime) -> dict[str, Any]:
    return {
        "active": merchant.active(now),
        "tariff_name": merchant.tariff_name,
        "expires_at": tashkent(merchant.expires_at),
        "payments_used": merchant.payments_used,
        "max_payments": merchant.max_payments,
    }


class Account:
    def __init__(self, accounts: Accounts, access: Access) -> None:
        self.accounts = accounts
        self.access = access

    async def subscription(self, merchant: Merchant, now: datetime) -> dict[str, Any]:
        fresh = await self.accounts.get_merchant(merchant.merchant_id) or merchant
        return subscription_view(fresh, now)

    async def get_settings(self, merchant: Merchant) -> dict[str, Any]:
        fresh = await self.accounts.get_merchant(merchant.merchant_id) or merchant
        return {"webhook_url": fresh.webhook_url, "notify_events": list(fresh.notify_events)}

    async def put_settings(self, merchant: Merchant, cmd: SettingsCommand) -> dict[str, Any]:
        """Merchant-wide defaults for payments created without `webhook_url` / `notify_events`
        (applied within `auth_cache_seconds`, the age of a cached merchant)."""
        updated = await self.accounts.set_settings(
            merchant.merchant_id, webhook_url=cmd.webhook_url, notify_events=cmd.notify_events
        )
        self.access.forget_merchants()
        return {
            "success": True,
            "webhook_url": updated.webhook_url,
            "notify_events": list(updated.notify_events),
        }
