"""What a parsed bank notification is (the parser's output)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

NotificationKind = Literal["credit", "debit", "reversal", "ignored", "rejected", "unparsed"]


@dataclass(frozen=True)
class Notification:
    """One message, classified.

    `kind == "credit"` only for a trusted, unambiguous incoming UZS transfer (a credit in
    another currency is `ignored`, with its fields kept; the matcher should still refuse
    non-UZS). Money is integer tiyin. `occurred_at` is the bank's time (aware, Asia/Tashkent,
    minute precision). `reason` says why (for non-credits: why not). Fields are filled whenever
    the text could be read, also for `rejected` messages (evidence), so always check `kind`.
    """

    kind: NotificationKind
    format: str | None = None
    amount_tiyin: int | None = None
    currency: str | None = None
    card_last4: str | None = None
    occurred_at: datetime | None = None
    balance_tiyin: int | None = None
    reason: str | None = None
    refusal: str | None = None
    """For `rejected`: the trust rule that refused it (one of `autopay_contracts.REFUSALS`)."""
    message_id: str | None = None
    sender: str | None = None
    received_at: datetime | None = None

    def fingerprint(self) -> str | None:
        """Content fingerprint of the transaction (bank time, card, amount, balance): the same
        transaction mailed twice under two Message-IDs has the same fingerprint."""
        if self.kind != "credit":
            return None
        occurred = self.occurred_at.isoformat() if self.occurred_at else ""
        parts = [self.card_last4, occurred, self.amount_tiyin, self.currency, self.balance_tiyin]
        raw = "|".join("" if p is None else str(p) for p in parts)
        return hashlib.sha256(raw.encode()).hexdigest()[:32]
