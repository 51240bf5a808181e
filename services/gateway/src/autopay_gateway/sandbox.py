"""Use case: a test key's simulated bank transfer to one of its sandbox cards."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import structlog

from autopay_contracts import SandboxTransferRequested
from autopay_contracts.money import TIYIN_PER_SOM
from autopay_gateway.cards import Cards
from autopay_gateway.messages import ApiError
from autopay_gateway.requests import SandboxTransfer
from autopay_gateway.settings import GatewaySettings
from autopay_runtime.publishing import EventPublisher, PublishFailed
from autopay_store.accounts import Merchant

log = structlog.get_logger("autopay_gateway")


class Sandbox:
    def __init__(self, settings: GatewaySettings, publisher: EventPublisher, cards: Cards) -> None:
        self.settings = settings
        self.publisher = publisher
        self.cards = cards

    async def transfer(
        self, merchant: Merchant, cmd: SandboxTransfer, now: datetime
    ) -> dict[str, Any]:
        """A simulated incoming transfer to a sandbox card. Mail-ingest builds the bank e-mail
        and reads it with the real parser; the matcher and the notifier then treat the credit
        as any other, within the sandbox world. A live key gets 403."""
        if not merchant.test_mode:
            raise ApiError(403, "sandbox_only")
        card = await self.cards.find(merchant, cmd.card_last4, cmd.gmail)
        if card is None:
            raise ApiError(400, "card_not_connected")
        transfer_id = "sbx" + uuid.uuid4().hex
        event = SandboxTransferRequested(
            transfer_id=transfer_id,
            merchant_id=merchant.merchant_id,
            gmail=card.gmail,
            card_last4=card.card_last4,
            amount_tiyin=cmd.amount * TIYIN_PER_SOM,
            requested_at=now,
        )
        try:
            await self.publisher.publish_acked(event, self.settings.publish_attempts)
        except PublishFailed as exc:
            log.error("sandbox transfer not acknowledged", error=str(exc))
            raise ApiError(503, "unavailable") from None
        log.info("sandbox transfer requested", merchant_id=merchant.merchant_id)
        return {
            "success": True,
            "test": True,
            "transfer_id": transfer_id,
            "amount": cmd.amount,
            "card_last4": card.card_last4,
            "gmail": card.gmail,
        }
