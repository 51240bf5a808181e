"""Synthetic bank notifications, realistic enough to pass the real parser and trust policy.

Used by `autopay dev send-credit` and the sandbox (INTERFACE FIRST; implemented by the parser
work).
"""

from __future__ import annotations

from datetime import datetime


def uzcard_credit_email(
    *,
    to: str,
    amount_tiyin: int,
    card_last4: str,
    occurred_at: datetime,
    balance_tiyin: int | None = None,
    counterparty: str = "CLICK P2P",
    message_id: str | None = None,
) -> bytes:
    """An `uzcard-email` credit (`Perevod na kartu`) from `noreply@info.uzcard.uz` with a
    passing `mx.google.com` Authentication-Results header, addressed to `to`."""
    raise NotImplementedError
