"""`uzcard-email`: the UZCARD INFO e-mail from `noreply@info.uzcard.uz`.

Uzbek and Russian blocks carry the same transaction line (see `uzcard_line`); the copies must
agree. A bank mail without a transaction line is information/marketing (`ignored`) unless its
subject says it is a transaction notice (`unparsed`).
"""

from __future__ import annotations

from autopay_bankmail.envelope import Envelope
from autopay_bankmail.formats import uzcard_line
from autopay_bankmail.formats.base import Classification, Format, unparsed
from autopay_bankmail.trust import BANK_SENDERS

SUBJECT = "UZCARD INFO"


def parse(env: Envelope) -> Classification | None:
    if env.forwarded:
        return None
    lines = [line for line in env.text.split("\n") if uzcard_line.is_candidate(line)]
    if lines:
        return uzcard_line.parse_copies(lines)
    if env.subject.upper() == SUBJECT:
        return unparsed("UZCARD INFO mail without a transaction line")
    if env.sender in BANK_SENDERS:
        return Classification(kind="ignored", reason="bank mail without a transaction")
    return None


FORMAT = Format(name="uzcard-email", channel="bank-email", parse=parse)
