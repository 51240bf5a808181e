"""Use cases of the admin API (`admin.py`): what the merchant bot and operators do to merchants
that the merchant's own key cannot — sign a merchant up (with an invite code), issue its keys,
read it, extend its subscription with a paid order — and the tariffs and mailbox owners the
bot needs to know. The callers are trusted (the admin listener and its token, `admin.py`);
the use cases still validate everything and never log a key, secret or invite code.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import structlog

from autopay_gateway.access import Access
from autopay_gateway.messages import ApiError
from autopay_gateway.requests import CreateMerchant, ExtendSubscription
from autopay_store.accounts import Accounts, KeyMode, Merchant, SubscriptionOrderTaken
from autopay_store.invites import Invites
from autopay_store.keys import Keys
from autopay_store.mailboxes import MailboxOwnership
from autopay_store.tariffs import Tariff, Tariffs, extend_subscription

log = structlog.get_logger("autopay_gateway")

DEFAULT_TARIFF = "Asosiy"
"""The tariff of a merchant created without one, as `autopay admin merchant create` does: the
stored tariff of that name when there is one, else `Accounts.create_merchant`'s defaults."""

MAX_MAILBOX_ID = 128


def utc_iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="seconds")


def merchant_view(merchant: Merchant, now: datetime) -> dict[str, Any]:
    return {
        "merchant_id": merchant.merchant_id,
        "name": merchant.name,
        "tariff_name": merchant.tariff_name,
        "max_payments": merchant.max_payments,
        "payments_used": merchant.payments_used,
        "expires_at": utc_iso(merchant.expires_at),
        "active": merchant.active(now),
    }


def tariff_view(tariff: Tariff) -> dict[str, Any]:
    return {
        "name": tariff.name,
        "price_som": tariff.price_som,
        "max_payments": tariff.max_payments,
        "days": tariff.days,
        "rate_per_s": tariff.rate_per_s,
        "rate_burst": tariff.rate_burst,
    }


class Operators:
    def __init__(
        self, accounts: Accounts, tariffs: Tariffs, invites: Invites, keys: Keys, access: Access
    ) -> None:
        self.accounts = accounts
        self.tariffs = tariffs
        self.invites = invites
        self.keys = keys
        self.access = access

    async def _tariff(self, name: str) -> Tariff:
        found = await self.tariffs.get(name)
        if found is None:
            raise ApiError(400, "unknown_tariff", tariff=name)
        return found

    async def _merchant(self, merchant_id: str) -> Merchant:
        merchant = await self.accounts.get_merchant(merchant_id) if merchant_id else None
        if merchant is None:
            raise ApiError(404, "merchant_not_found")
        return merchant

    async def create_merchant(self, cmd: CreateMerchant, now: datetime) -> dict[str, Any]:
        """A live merchant with its live key, webhook secret and bot key. The tariff is checked
        first, then the invite code is redeemed (atomically: of two sign-ups racing for its last
        use one wins), then the merchant is created; a failure after the redemption gives the
        use back. Nothing is created for an unknown tariff or an unusable code (400)."""
        tariff = await self._tariff(cmd.tariff) if cmd.tariff is not None else None
        if tariff is None:
            tariff = await self.tariffs.get(DEFAULT_TARIFF)
        if cmd.invite_code is not None and not await self.invites.redeem(cmd.invite_code, now):
            raise ApiError(400, "invalid_invite")
        try:
            if tariff is None:
                created = await self.accounts.create_merchant(cmd.name, now=now)
            else:
                created = await self.accounts.create_merchant(
                    cmd.name,
                    tariff_name=tariff.name,
                    max_payments=tariff.max_payments,
                    days=tariff.days,
                    now=now,
                )
                await self.accounts.set_rate_limit(
                    created.merchant.merchant_id, per_s=tariff.rate_per_s, burst=tariff.rate_burst
                )
            bot_key = await self.accounts.rotate_api_key(created.merchant.merchant_id, mode="bot")
        except BaseException:
            if cmd.invite_code is not None:
                await self.invites.release(cmd.invite_code)
            raise
        merchant_id = created.merchant.merchant_id
        log.info(
            "merchant created through the admin API",
            merchant_id=merchant_id,
            tariff=created.merchant.tariff_name if tariff is None else tariff.name,
            invited=cmd.invite_code is not None,
        )
        return {
            "merchant_id": merchant_id,
            "api_key": created.api_key,
            "webhook_secret": created.webhook_secret,
            "bot_key": bot_key,
        }

    async def rotate_key(self, merchant_id: str, mode: KeyMode) -> dict[str, Any]:
        """A new key of `mode`; the previous key of that mode stops at once (the cache of
        authenticated keys is dropped too), the other modes' keys are untouched."""
        await self._merchant(merchant_id)
        api_key = await self.accounts.rotate_api_key(merchant_id, mode=mode)
        self.access.forget_merchants()
        log.info("api key rotated through the admin API", merchant_id=merchant_id, mode=mode)
        return {"merchant_id": merchant_id, "mode": mode, "api_key": api_key}

    async def merchant(self, merchant_id: str, now: datetime) -> dict[str, Any]:
        return merchant_view(await self._merchant(merchant_id), now)

    async def extend(
        self, merchant_id: str, cmd: ExtendSubscription, now: datetime
    ) -> dict[str, Any]:
        """One period of the tariff bought with the paid order `cmd.order_id`, applied once:
        the same order again answers the current state with `extended: false`."""
        tariff = await self._tariff(cmd.tariff)
        await self._merchant(merchant_id)
        try:
            merchant, extended = await extend_subscription(
                self.accounts, merchant_id, tariff, cmd.order_id, now
            )
        except KeyError:
            raise ApiError(404, "merchant_not_found") from None
        except SubscriptionOrderTaken:
            raise ApiError(409, "subscription_order_taken") from None
        self.access.forget_merchants()
        if extended:
            log.info(
                "subscription extended",
                merchant_id=merchant_id,
                order_id=cmd.order_id,
                tariff=tariff.name,
            )
        return {**merchant_view(merchant, now), "extended": extended}

    async def list_tariffs(self) -> dict[str, Any]:
        return {"tariffs": [tariff_view(t) for t in await self.tariffs.all()]}

    async def mailbox(self, mailbox_id: str) -> dict[str, Any]:
        """The mailbox's owner: the merchant whose cards are on it (404 when nobody, or several
        merchants in a dispute, own it)."""
        record = await self._ownership(mailbox_id)
        if record is None or record.owner is None:
            raise ApiError(404, "mailbox_not_found")
        return {"mailbox_id": mailbox_id, "gmail": record.gmail, "merchant_id": record.owner}

    async def _ownership(self, mailbox_id: str) -> MailboxOwnership | None:
        """The ownership record; a mailbox connected before records existed (and before the
        mailbox migration ran) is adopted first, its address read from its owner's card."""
        if not mailbox_id or len(mailbox_id) > MAX_MAILBOX_ID:
            return None
        owners = self.accounts.mailboxes
        record = await owners.get(mailbox_id)
        if record is not None or await owners.migrated():
            return record
        for slot in (await owners.legacy_cards(mailbox_id)).values():
            for card in await self.accounts.list_cards(slot.merchant_id):
                if card.mailbox_id == mailbox_id:
                    return await owners.current(mailbox_id, card.gmail)
        return None
