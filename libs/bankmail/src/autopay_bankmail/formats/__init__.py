"""Registry of notification formats. A new bank format is one module with a `FORMAT` here.

Order matters: the first format whose `parse` does not return None decides. Non-transactions
(one-time codes, declines) go first so a quoted purchase line inside them is never read.
"""

from __future__ import annotations

from autopay_bankmail.envelope import Envelope
from autopay_bankmail.formats import (
    cardxabar,
    decline,
    humo_bot,
    humo_sms,
    otp,
    uzcard_email,
    uzcard_sms,
)
from autopay_bankmail.formats.base import Classification, Format

REGISTRY: tuple[Format, ...] = (
    otp.FORMAT,
    decline.FORMAT,
    uzcard_email.FORMAT,
    uzcard_sms.FORMAT,
    humo_sms.FORMAT,
    cardxabar.FORMAT,
    humo_bot.FORMAT,
)


def classify(env: Envelope) -> tuple[Format, Classification] | None:
    for fmt in REGISTRY:
        found = fmt.parse(env)
        if found is not None:
            return fmt, found
    return None


__all__ = ["REGISTRY", "Classification", "Format", "classify"]
