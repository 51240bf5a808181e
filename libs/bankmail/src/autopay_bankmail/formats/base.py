"""What a format parser returns, and how a format declares itself."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

from autopay_bankmail.envelope import Envelope

ContentKind = Literal["credit", "debit", "reversal", "ignored", "unparsed"]
Channel = Literal["bank-email", "forwarded", "either"]


@dataclass(frozen=True)
class Classification:
    """A format's reading of the text, before trust is considered."""

    kind: ContentKind
    amount_tiyin: int | None = None
    currency: str | None = None
    card_last4: str | None = None
    occurred_at: datetime | None = None
    balance_tiyin: int | None = None
    reason: str | None = None

    def but(self, kind: ContentKind, reason: str) -> Classification:
        return replace(self, kind=kind, reason=reason)


def unparsed(reason: str) -> Classification:
    return Classification(kind="unparsed", reason=reason)


@dataclass(frozen=True)
class Format:
    """One notification format.

    `parse` returns None when the message is not in this format at all, else a classification
    (possibly `unparsed` with a reason: "this is ours, but we cannot read it").
    `channel` says which trust rule applies; `sms_senders` are the bank's SMS sender ids for
    forwarded formats (normalised: lowercase, no spaces/@/-/_), None meaning any.
    """

    name: str
    channel: Channel
    parse: Callable[[Envelope], Classification | None]
    sms_senders: frozenset[str] | None = None
