"""`decline`: a declined operation (`Nedostatochno sredstv`, `Hisobda mablag' yetarli emas`,
`Otkaz`) quoting the purchase it refused. No money moved."""

from __future__ import annotations

import re

from autopay_bankmail.envelope import Envelope
from autopay_bankmail.formats.base import Classification, Format
from autopay_bankmail.trust import BANK_SENDERS

_MARK = re.compile(
    r"nedostatochno sredstv|yetarli emas|недостаточно средств|\botkaz\b|\botkloneno?\b|"
    r"rad etildi|\bdeclined\b",
    re.I,
)


def parse(env: Envelope) -> Classification | None:
    if not env.forwarded and env.sender not in BANK_SENDERS:
        return None
    if _MARK.search(env.body) is None:
        return None
    return Classification(kind="ignored", reason="declined operation: no money moved")


FORMAT = Format(name="decline", channel="either", parse=parse)
