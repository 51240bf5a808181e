"""`cardxabar`: a push of Uzcard's CardXabar Telegram bot (@cardXabarBot), forwarded by mail.

```
🟢 Kartaga o'tkazma                 (🔴 for money out)
➕ 1 234 567.89 UZS                 (➖ for money out)
💳 ***NNNN
📍 <merchant>
🕓 dd.mm.yy HH:MM
💵 <balance> UZS
```

Colour and sign must agree; the label must be on the credit allow-list. Amounts use a space for
thousands and `.` for decimals.
"""

from __future__ import annotations

import re

from autopay_bankmail.envelope import Envelope
from autopay_bankmail.formats import _emoji
from autopay_bankmail.formats.base import Classification, Format, unparsed
from autopay_bankmail.formats.humo_bot import when
from autopay_bankmail.values import CURRENCY_MARK, NUMBER, currency_code, tiyin

GREEN, RED = "\U0001f7e2", "\U0001f534"
_MONEY = re.compile(rf"^(?P<num>{NUMBER})\s*(?P<cur>{CURRENCY_MARK})$")
_CREDIT_LABELS = re.compile(
    r"^(?:kartaga o'tkazma|popolnenie scheta|popolnenie|perevod na kartu|to'ldirish)$", re.I
)
_REVERSAL = re.compile(r"^(?:otmena|bekor)", re.I)
_NOT_TRANSFER = re.compile(r"^(?:konversiya|конверсия)", re.I)


def money(value: str) -> tuple[int, str] | None:
    match = _MONEY.match(value)
    if match is None:
        return None
    amount = tiyin(match["num"], decimal=".", thousands=" ")
    currency = currency_code(match["cur"])
    return None if amount is None or currency is None else (amount, currency)


def parse(env: Envelope) -> Classification | None:
    found = _emoji.fields(env.body)
    colours = [(m, v) for m, v in found if m in (GREEN, RED)]
    if not colours:
        return None
    signs = [(m, v) for m, v in found if m in (_emoji.PLUS, _emoji.MINUS)]
    cards = _emoji.values(found, _emoji.CARD)
    times = _emoji.values(found, _emoji.CLOCKS)
    balances = _emoji.values(found, _emoji.CASH + _emoji.BALANCE)
    if len(colours) != 1 or len(signs) != 1 or len(cards) != 1 or len(times) != 1:
        return unparsed("expected one colour, one sign, one card and one time field")
    fields = _emoji.transaction(cards[0], signs[0][1], times[0], balances, money, when)
    if fields.reason:
        return fields
    colour, label = colours[0]
    sign = signs[0][0]
    if (colour == GREEN) != (sign == _emoji.PLUS):
        return fields.but("unparsed", f"{colour} with {sign}: direction conflicts")
    if _REVERSAL.match(label):
        return fields.but("reversal", f"reversal ({label}) returns money, it is not a payment")
    if sign == _emoji.MINUS:
        return fields.but("debit", f"outgoing operation ({label or sign})")
    if _NOT_TRANSFER.match(label):
        return fields.but("ignored", f"{label} is not an incoming transfer")
    if _CREDIT_LABELS.match(label):
        return fields.but("credit", f"incoming ({label})")
    return fields.but("unparsed", f"unknown operation {label!r} with a ➕ amount")


FORMAT = Format(
    name="cardxabar",
    channel="forwarded",
    parse=parse,
    sms_senders=frozenset({"cardxabar", "cardxabarbot"}),
)
