"""`humo-bot`: a push of Humo's official Telegram bot (@HUMOcardbot), forwarded by mail.

```
🎉 Пополнение | To'ldirish          (💸 debits, 🏧 cash, ℹ️ info)
➕ 1.234.567,89 UZS                 (➖ for money out)
📍 <merchant, truncated>
💳 HUMOCARD *NNNN
🕓 HH:MM dd.mm.yyyy
💰 <balance> UZS
```

Direction comes from the ➕/➖ sign; a header emoji that contradicts it, or a type word outside
the credit allow-list, is never a credit. Amounts use `.` for thousands and `,` for decimals.
"""

from __future__ import annotations

import re
from datetime import datetime

from autopay_bankmail.envelope import Envelope
from autopay_bankmail.formats import _emoji
from autopay_bankmail.formats.base import Classification, Format, unparsed
from autopay_bankmail.values import CURRENCY_MARK, NUMBER, bank_time, currency_code, tiyin

_MONEY = re.compile(rf"^(?P<num>{NUMBER})\s*(?P<cur>{CURRENCY_MARK})$")
_TIME_FIRST = re.compile(
    r"^(?P<H>\d{1,2}):(?P<M>\d{2})\s+(?P<d>\d{2})\.(?P<m>\d{2})\.(?P<y>\d{4}|\d{2})$"
)
_DATE_FIRST = re.compile(
    r"^(?P<d>\d{2})\.(?P<m>\d{2})\.(?P<y>\d{4}|\d{2})\s+(?P<H>\d{1,2}):(?P<M>\d{2})$"
)
_CREDIT_WORDS = re.compile(r"^(?:пополнение|popolnenie|to.?ldirish|perevod|перевод)\b", re.I)
_REVERSAL_WORDS = re.compile(r"^(?:отмена|otmena|bekor)", re.I)
_NOT_TRANSFER_WORDS = re.compile(r"^(?:конверсия|konversiya)", re.I)
_HUMO_CARD = re.compile(r"HUMO\s*-?\s*CARD", re.I)

CREDIT_HEADER = "\U0001f389"  # 🎉
DEBIT_HEADERS = "\U0001f4b8\U0001f3e7"  # 💸 🏧


def money(value: str) -> tuple[int, str] | None:
    match = _MONEY.match(value)
    if match is None:
        return None
    amount = tiyin(match["num"], decimal=",", thousands=". ")
    currency = currency_code(match["cur"])
    return None if amount is None or currency is None else (amount, currency)


def when(value: str) -> datetime | None:
    match = _TIME_FIRST.match(value) or _DATE_FIRST.match(value)
    if match is None:
        return None
    return bank_time(
        int(match["y"]), int(match["m"]), int(match["d"]), int(match["H"]), int(match["M"])
    )


def parse(env: Envelope) -> Classification | None:
    found = _emoji.fields(env.body)
    cards = _emoji.values(found, _emoji.CARD)
    if not cards or _emoji.values(found, "\U0001f7e2\U0001f534"):
        return None
    if not any(_HUMO_CARD.search(c) for c in cards) and not _emoji.values(found, _emoji.BALANCE):
        return None

    signs = [(m, v) for m, v in found if m in (_emoji.PLUS, _emoji.MINUS)]
    times = _emoji.values(found, _emoji.CLOCKS)
    balances = _emoji.values(found, _emoji.BALANCE + _emoji.CASH)
    headers = [(m, v) for m, v in found if m in _emoji.HEADERS]
    if len(cards) != 1 or len(signs) > 1 or len(times) != 1 or len(headers) > 1:
        return unparsed("expected one card, one sign, one time and one header field")
    if not signs:
        return unparsed("no ➕/➖ sign: direction unknown")
    fields = _emoji.transaction(cards[0], signs[0][1], times[0], balances, money, when)
    if fields.reason:
        return fields
    header, word = headers[0] if headers else ("", "")
    if signs[0][0] == _emoji.MINUS:
        if header == CREDIT_HEADER:
            return fields.but("unparsed", "🎉 header with a ➖ amount: direction conflicts")
        return fields.but("debit", f"outgoing operation ({word or '➖'})")
    if header in DEBIT_HEADERS:
        return fields.but("unparsed", f"{header} header with a ➕ amount: direction conflicts")
    if _REVERSAL_WORDS.match(word):
        return fields.but("reversal", f"reversal ({word}) returns money, it is not a payment")
    if _NOT_TRANSFER_WORDS.match(word):
        return fields.but("ignored", f"{word} is not an incoming transfer")
    if _CREDIT_WORDS.match(word):
        return fields.but("credit", f"incoming ({word})")
    return fields.but("unparsed", f"unknown operation {word!r} with a ➕ amount")


FORMAT = Format(
    name="humo-bot", channel="forwarded", parse=parse, sms_senders=frozenset({"humocardbot"})
)
