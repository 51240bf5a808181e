"""The UZCARD transaction line, shared by the e-mail and the SMS:

`<Operation>: <merchant>, <CC>,<dd.mm.yy HH:MM[:SS]>,karta ***NNNN. summa:<amount> <CUR>[,]
[balans:<amount> <CUR>]`

Fields are found independently, so their order and the spacing between them do not matter;
each must occur exactly once. Direction comes from the operation label only, against an
allow-list: unknown labels are never a credit.
"""

from __future__ import annotations

import re

from autopay_bankmail.formats.base import Classification, unparsed
from autopay_bankmail.values import CURRENCY_MARK, NUMBER, bank_time, currency_code, tiyin

_LABEL = re.compile(r"^(?:(?:fwd?|fw)\s*:\s*)?(?P<label>[A-Za-z][A-Za-z' .\-]{0,59}?)\s*:", re.I)
_DATETIME = re.compile(
    r"(?<![\d.])(?P<d>\d{2})\.(?P<m>\d{2})\.(?P<y>\d{4}|\d{2})[ ,]+"
    r"(?P<H>\d{1,2}):(?P<M>\d{2})(?::\d{2})?(?![\d:])"
)
_CARD = re.compile(r"karta\s*\*+\s*(?P<card>\d{4})(?!\d)", re.I)
_AMOUNT = re.compile(rf"summa\s*:\s*(?P<num>{NUMBER})\s*(?P<cur>{CURRENCY_MARK})(?![A-Za-z])", re.I)
_BALANCE = re.compile(
    rf"balans\s*:\s*(?P<num>-?\s*{NUMBER})\s*(?P<cur>{CURRENCY_MARK})(?![A-Za-z])", re.I
)
_MARKER = re.compile(r"summa\s*:|karta\s*\*", re.I)

CREDIT_LABELS = frozenset({"popolnenie scheta", "popolnenie"})
P2P_LABELS = frozenset({"perevod na kartu"})
DEBIT_LABELS = frozenset(
    {
        "pokupka",
        "e-com oplata",
        "oplata",
        "platezh",
        "debit online",
        "spisanie c karty",
        "spisanie s karty",
        "vidacha nalichnykh v bankomate",
        "perevod c karti",
        "perevod s karty",
        "perevod c karty",
    }
)
NOT_TRANSFER_LABELS = frozenset({"popolnenie nalichnimi v atm", "konversiya"})


def is_candidate(line: str) -> bool:
    """Does this line look like a transaction line (has `summa:` or `karta *`)?"""
    return _MARKER.search(line) is not None


def count_amounts(text: str) -> int:
    return len(_AMOUNT.findall(text))


def parse_line(line: str) -> Classification:
    label_match = _LABEL.match(line)
    if label_match is None:
        return unparsed("no operation label before ':'")
    dates = list(_DATETIME.finditer(line))
    cards = list(_CARD.finditer(line))
    amounts = list(_AMOUNT.finditer(line))
    balances = list(_BALANCE.finditer(line))
    for name, found in (("date and time", dates), ("card", cards), ("amount (summa)", amounts)):
        if len(found) != 1:
            return unparsed(f"expected one {name}, found {len(found)}")
    if len(balances) > 1:
        return unparsed(f"expected at most one balance, found {len(balances)}")
    date, card, amount = dates[0], cards[0], amounts[0]

    occurred_at = bank_time(
        int(date["y"]), int(date["m"]), int(date["d"]), int(date["H"]), int(date["M"])
    )
    if occurred_at is None:
        return unparsed(f"impossible date/time {date.group(0)!r}")
    amount_tiyin = tiyin(amount["num"], decimal=".", thousands=" ")
    currency = currency_code(amount["cur"])
    if amount_tiyin is None or currency is None:
        return unparsed(f"unreadable amount {amount.group(0)!r}")
    balance_tiyin = None
    if balances:
        balance_tiyin = tiyin(balances[0]["num"].replace(" ", ""), decimal=".")
        if balance_tiyin is None:
            return unparsed(f"unreadable balance {balances[0].group(0)!r}")

    label = re.sub(r"\s+", " ", label_match["label"]).strip().lower()
    field_starts = [m.start() for m in (date, card, amount, *balances)]
    merchant = line[label_match.end() : min(field_starts)].strip(" ,.")
    fields = Classification(
        kind="unparsed",
        amount_tiyin=amount_tiyin,
        currency=currency,
        card_last4=card["card"],
        occurred_at=occurred_at,
        balance_tiyin=balance_tiyin,
    )
    return _direction(fields, label, merchant)


def _direction(fields: Classification, label: str, merchant: str) -> Classification:
    shown = label.capitalize()
    if label.startswith("otmena"):
        return fields.but("reversal", f"reversal ({shown}) returns money, it is not a payment")
    if label in DEBIT_LABELS:
        return fields.but("debit", f"outgoing operation ({shown})")
    if label in NOT_TRANSFER_LABELS:
        return fields.but("ignored", f"{shown} is not an incoming transfer")
    if label in CREDIT_LABELS:
        return fields.but("credit", f"incoming ({shown})")
    if label in P2P_LABELS:
        upper = merchant.upper()
        if re.search(r"\bSCHET\s+TO\b", upper):
            return fields.but("ignored", f"{shown} to an account ({merchant}): direction ambiguous")
        if re.search(r"\bP2P\b", upper):
            return fields.but("credit", f"incoming P2P transfer ({merchant})")
        return fields.but("ignored", f"{shown} without a P2P counterpart: direction ambiguous")
    return fields.but("unparsed", f"unknown operation label {shown!r}")


def parse_copies(lines: list[str]) -> Classification:
    """Several copies of the line in one message (Uzbek and Russian blocks) must agree."""
    readings = [parse_line(line) for line in lines]
    first = readings[0]
    if any(r != first for r in readings[1:]):
        bad = next((r for r in readings if r.kind == "unparsed"), None)
        if bad is not None:
            return bad
        return unparsed(f"{len(readings)} transaction lines in one message disagree")
    return first
