"""`uzcard-sms`: the UZCARD SMS (sender id `UZCARD`) mailed by a forwarder app.

Same line grammar as the e-mail (see `uzcard_line`); one SMS is one line, so a line broken by
the forwarder is joined back first.
"""

from __future__ import annotations

from autopay_bankmail.envelope import Envelope
from autopay_bankmail.formats import uzcard_line
from autopay_bankmail.formats.base import Classification, Format, unparsed


def parse(env: Envelope) -> Classification | None:
    if not env.forwarded:
        return None
    text = " ".join(part for part in env.body.split("\n") if part)
    if not uzcard_line.is_candidate(text):
        return None
    if uzcard_line.count_amounts(text) > 1:
        return unparsed("several transactions in one forwarded SMS")
    return uzcard_line.parse_line(text)


FORMAT = Format(
    name="uzcard-sms", channel="forwarded", parse=parse, sms_senders=frozenset({"uzcard"})
)
