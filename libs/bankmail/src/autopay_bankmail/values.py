"""Money, currency and bank-time values shared by the format parsers."""

from __future__ import annotations

import re
from datetime import datetime
from functools import cache

from autopay_contracts.local_time import TASHKENT

_MAX_WHOLE_DIGITS = 13

_CURRENCIES = {
    "UZS": "UZS",
    "USD": "USD",
    "EUR": "EUR",
    "RUB": "RUB",
    "SO'M": "UZS",
    "SOM": "UZS",
    "SUM": "UZS",
    "СУМ": "UZS",
    "СЎМ": "UZS",
}

NUMBER = r"\d[\d.,]*+(?: \d[\d.,]*+)*+"
"""Digits with `.`/`,` marks and single-space groups (possessive: no backtracking)."""

CURRENCY_MARK = r"(?:[A-Za-z]{3}|[Ss][Oo]'[Mm]|[Сс][УуЎў][Мм])"


def currency_code(token: str) -> str | None:
    """ISO code for a currency mark (`UZS`, `so'm`, `сум` → `UZS`); None if not recognised."""
    return _CURRENCIES.get(token.strip().upper())


@cache
def _number_pattern(decimal: str, thousands: str) -> re.Pattern[str]:
    groups = [r"\d+"]
    for sep in thousands:
        groups.append(rf"\d{{1,3}}(?:{re.escape(sep)}\d{{3}})+")
    whole = "|".join(groups)
    return re.compile(rf"(?P<whole>{whole})(?:{re.escape(decimal)}(?P<frac>\d{{1,2}}))?")


def tiyin(number: str, *, decimal: str, thousands: str = "") -> int | None:
    """Parse an amount written with one format's conventions into integer tiyin.

    `decimal` is the decimal mark, `thousands` the characters allowed as thousands separators.
    Anything else (a second decimal mark, a group of the wrong size) gives None: a number we
    cannot read unambiguously is not money.
    """
    text = number.strip()
    negative = text.startswith("-")
    if negative:
        text = text[1:].lstrip()
    match = _number_pattern(decimal, thousands).fullmatch(text)
    if match is None:
        return None
    whole = re.sub(r"\D", "", match["whole"])
    if len(whole.lstrip("0")) > _MAX_WHOLE_DIGITS:
        return None
    frac = (match["frac"] or "").ljust(2, "0")
    value = int(whole) * 100 + int(frac)
    return -value if negative else value


def bank_time(year: int, month: int, day: int, hour: int, minute: int) -> datetime | None:
    """Aware Tashkent time at minute precision; None for an impossible date such as 31.02."""
    if year < 100:
        year += 2000
    try:
        return datetime(year, month, day, hour, minute, tzinfo=TASHKENT)
    except ValueError:
        return None
