"""Test data: orders and credits on the demo card, with defaults a test overrides by keyword."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from autopay_contracts import Credit, Order, mailbox_id_for

T0 = datetime(2026, 5, 16, 7, 30, 30, tzinfo=UTC)
GMAIL = "karta@gmail.com"
MBX = mailbox_id_for(GMAIL)
CARD = "6412"


def order(order_id: str, amount: int = 5_003_700, at: datetime = T0, **kw) -> Order:
    """A five-minute order created at `at`, for `amount` tiyin, on the demo card."""
    base: dict[str, Any] = dict(
        order_id=order_id,
        merchant_id="7",
        mailbox_id=MBX,
        gmail=GMAIL,
        card_last4=CARD,
        amount_tiyin=amount,
        created_at=at,
        expires_at=at + timedelta(minutes=5),
    )
    return Order(**(base | kw))


def credit(credit_id: str, amount: int = 5_003_700, bank: datetime = T0, **kw) -> Credit:
    """A UZS credit with bank time `bank` (cut to the minute, as banks write it)."""
    base: dict[str, Any] = dict(
        credit_id=credit_id,
        mailbox_id=MBX,
        gmail=GMAIL,
        card_last4=CARD,
        amount_tiyin=amount,
        occurred_at=bank.replace(second=0, microsecond=0),
        received_at=bank,
        format="uzcard-email",
    )
    return Credit(**(base | kw))
