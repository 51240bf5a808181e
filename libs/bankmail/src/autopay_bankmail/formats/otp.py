"""`otp`: one-time codes (`<#> Kod podtverzhdeniya: 886001 ...`). Never a transaction.

Only looked for in bank mail and forwarded texts: an ordinary "your code is 1234" e-mail in
the mailbox is not a bank notification at all.
"""

from __future__ import annotations

import re

from autopay_bankmail.envelope import Envelope
from autopay_bankmail.formats.base import Classification, Format
from autopay_bankmail.trust import BANK_SENDERS

_MARK = re.compile(
    r"<#>"
    r"|\b(?:kod|kodi|code|parol|kod podtverzhdeniya|код|код подтверждения|пароль)\b"
    r"\s*:?\s*(?<!\d)\d{4,8}(?!\d)"
    r"|\bpodtverdite\b|\bnikomu ne (?:soobshch|govor)\w*|\bhech kimga\b",
    re.I,
)


def parse(env: Envelope) -> Classification | None:
    if not env.forwarded and env.sender not in BANK_SENDERS:
        return None
    if _MARK.search(env.body) is None:
        return None
    return Classification(kind="ignored", reason="one-time code, not a transaction")


FORMAT = Format(name="otp", channel="either", parse=parse)
