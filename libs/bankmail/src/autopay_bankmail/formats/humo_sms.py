"""`humo-sms`: the processing centre's semicolon SMS (HUMOCARD, also VISA), forwarded by mail.

`HUMOCARD *NNNN: popolnenie 50037.00 UZS; <merchant>; yy-mm-dd HH:MM; Dostupno: <bal> UZS`

The date is year first. `popolnenie` is a credit; `oplata` / `operacija` are debits.
"""

from __future__ import annotations

import re

from autopay_bankmail.envelope import Envelope
from autopay_bankmail.formats.base import Classification, Format, unparsed
from autopay_bankmail.values import CURRENCY_MARK, NUMBER, bank_time, currency_code, tiyin

_HEAD = re.compile(
    r"(?P<brand>HUMO\s*-?\s*CARD|VISA|MASTERCARD)\s*\*+\s*(?P<card>\d{4})\s*:\s*"
    r"(?P<op>[A-Za-z][A-Za-z' ]{0,40}?)\s+"
    rf"(?P<num>{NUMBER})\s*(?P<cur>{CURRENCY_MARK})\s*;",
    re.I,
)
_DETECT = re.compile(r"(?:HUMO\s*-?\s*CARD|VISA|MASTERCARD)\s*\*+\s*\d{4}\s*:", re.I)
_DATETIME = re.compile(
    r"(?<![\d\-])(?P<y>\d{4}|\d{2})-(?P<m>\d{2})-(?P<d>\d{2})\s+(?P<H>\d{1,2}):(?P<M>\d{2})(?![\d:])"
)
_AVAILABLE = re.compile(
    rf"Dostupno\s*:\s*(?P<num>-?{NUMBER})\s*(?P<cur>{CURRENCY_MARK})(?![A-Za-z])", re.I
)
CREDIT_OPS = frozenset({"popolnenie"})
DEBIT_OPS = frozenset({"oplata", "operacija", "operatsiya", "snyatie", "spisanie"})


def parse(env: Envelope) -> Classification | None:
    text = " ".join(part for part in env.body.split("\n") if part)
    heads = list(_DETECT.finditer(text))
    if not heads:
        return None
    if len(heads) > 1:
        return unparsed("several transactions in one forwarded SMS")
    head = _HEAD.search(text)
    if head is None:
        return unparsed("unreadable HUMOCARD line")
    rest = text[head.end() :]
    dates = list(_DATETIME.finditer(rest))
    if len(dates) != 1:
        return unparsed(f"expected one date and time, found {len(dates)}")
    date = dates[0]
    occurred_at = bank_time(
        int(date["y"]), int(date["m"]), int(date["d"]), int(date["H"]), int(date["M"])
    )
    if occurred_at is None:
        return unparsed(f"impossible date/time {date.group(0)!r}")
    amount = tiyin(head["num"], decimal=".")
    currency = currency_code(head["cur"])
    if amount is None or currency is None:
        return unparsed(f"unreadable amount {head['num']} {head['cur']}")
    available = list(_AVAILABLE.finditer(rest))
    balance = tiyin(available[0]["num"], decimal=".") if len(available) == 1 else None

    fields = Classification(
        kind="unparsed",
        amount_tiyin=amount,
        currency=currency,
        card_last4=head["card"],
        occurred_at=occurred_at,
        balance_tiyin=balance,
    )
    op = re.sub(r"\s+", " ", head["op"]).strip().lower()
    if op.startswith("otmena"):
        return fields.but("reversal", f"reversal ({op}) returns money, it is not a payment")
    if op in DEBIT_OPS:
        return fields.but("debit", f"outgoing operation ({op})")
    if op in CREDIT_OPS:
        return fields.but("credit", f"incoming ({op})")
    return fields.but("unparsed", f"unknown operation {op!r}")


FORMAT = Format(
    name="humo-sms",
    channel="forwarded",
    parse=parse,
    sms_senders=frozenset({"humo", "humocard"}),
)
