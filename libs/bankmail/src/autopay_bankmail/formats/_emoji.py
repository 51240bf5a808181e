"""Splitting emoji-field bot pushes (Humo bot, CardXabar) into (marker, text) fields.

Works whether the fields come one per line or run together on one line.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime

from autopay_bankmail.formats.base import Classification, unparsed

CLOCKS = "".join(chr(c) for c in range(0x1F550, 0x1F568)) + "\u23f0\u231a"
HEADERS = "\U0001f389\U0001f4b8\U0001f3e7\u2139\U0001f7e2\U0001f534"  # 🎉 💸 🏧 ℹ 🟢 🔴
PLUS, MINUS = "\u2795", "\u2796"  # ➕ ➖
PLACE, CARD, BALANCE, CASH = "\U0001f4cd", "\U0001f4b3", "\U0001f4b0", "\U0001f4b5"
MARKERS = HEADERS + PLUS + MINUS + PLACE + CARD + BALANCE + CASH + CLOCKS
_SPLIT = re.compile(f"([{re.escape(MARKERS)}])")
_BOLD = re.compile(
    r"\*\*(?=\S)([^*\n]{1,80}?)(?<=\S)\*\*"
)  # Telegram Markdown, as Telethon renders it


def fields(text: str) -> list[tuple[str, str]]:
    parts = _SPLIT.split(text)
    out = []
    for index in range(1, len(parts), 2):
        value = _BOLD.sub(r"\1", re.sub(r"\s+", " ", parts[index + 1])).strip()
        out.append((parts[index], value))
    return out


def values(found: list[tuple[str, str]], markers: str) -> list[str]:
    return [value for marker, value in found if marker in markers]


def card_last4(value: str) -> str | None:
    match = re.search(r"\*+\s*(\d{4})$", value)
    return match[1] if match else None


def transaction(
    card_field: str,
    amount_field: str,
    time_field: str,
    balances: list[str],
    money: Callable[[str], tuple[int, str] | None],
    when: Callable[[str], datetime | None],
) -> Classification:
    """Card, amount, time and balance as both bot formats read them: an `unparsed` record
    without a reason, for the caller to give its kind, or an `unparsed` one saying what is
    unreadable."""
    card = card_last4(card_field)
    if card is None:
        return unparsed(f"unreadable card {card_field!r}")
    amount = money(amount_field)
    if amount is None:
        return unparsed(f"unreadable amount {amount_field!r}")
    occurred_at = when(time_field)
    if occurred_at is None:
        return unparsed(f"unreadable time {time_field!r}")
    balance = money(balances[0]) if len(balances) == 1 else None
    return Classification(
        kind="unparsed",
        amount_tiyin=amount[0],
        currency=amount[1],
        card_last4=card,
        occurred_at=occurred_at,
        balance_tiyin=balance[0] if balance else None,
    )
