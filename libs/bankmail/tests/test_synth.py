"""Synthetic notifications round-trip through the real parser and trust policy."""

from __future__ import annotations

import base64
import email
from datetime import UTC, datetime, timedelta
from email import policy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autopay_bankmail import parse_notification
from autopay_bankmail.synth import (
    BUILDERS,
    FORWARDED_FORMATS,
    credit_notification,
    uzcard_credit_email,
)
from autopay_contracts.local_time import TASHKENT

MAILBOX = "merchant.one@gmail.com"
AT = datetime(2026, 3, 14, 10, 7, 41, tzinfo=TASHKENT)


def read(raw: bytes, fmt: str):
    return parse_notification(raw, mailbox=MAILBOX, allow_forwarded=fmt in FORWARDED_FORMATS)


@settings(max_examples=60, deadline=None)
@given(
    fmt=st.sampled_from(sorted(BUILDERS)),
    amount=st.integers(min_value=1, max_value=10**13),
    card=st.from_regex(r"\A[0-9]{4}\Z"),
    moment=st.datetimes(
        min_value=datetime(2001, 1, 1), max_value=datetime(2098, 12, 31), timezones=st.just(UTC)
    ),
    balance=st.none() | st.integers(min_value=0, max_value=10**13),
)
def test_every_builder_round_trips(fmt, amount, card, moment, balance):
    raw = credit_notification(
        fmt,
        to=MAILBOX,
        amount_tiyin=amount,
        card_last4=card,
        occurred_at=moment,
        balance_tiyin=balance,
    )
    note = read(raw, fmt)
    assert note.kind == "credit", note.reason
    assert note.format == fmt
    assert note.amount_tiyin == amount
    assert note.currency == "UZS"
    assert note.card_last4 == card
    assert note.occurred_at == moment.astimezone(TASHKENT).replace(second=0, microsecond=0)
    assert note.occurred_at.utcoffset() == timedelta(hours=5)
    if balance is not None:
        assert note.balance_tiyin == balance


def test_uzcard_email_looks_like_the_bank_mail():
    raw = uzcard_credit_email(
        to=MAILBOX, amount_tiyin=5003700, card_last4="4821", occurred_at=AT, balance_tiyin=1
    )
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert raw.startswith(b"Authentication-Results: mx.google.com;")
    assert msg["From"].addresses[0].addr_spec == "noreply@info.uzcard.uz"
    assert msg["To"] == MAILBOX
    assert msg["Subject"] == "UZCARD INFO"
    assert msg["Date"].datetime == AT
    assert msg["Content-Transfer-Encoding"] == "base64"
    text = base64.b64decode(msg.get_payload()).decode()
    line = (
        "Perevod na kartu: CLICK P2P, UZ,14.03.26 10:07,karta ***4821. "
        "summa:50037.00 UZS balans:0.01 UZS"
    )
    assert text.count(line) == 2
    assert "Hurmatli mijoz" in text
    assert "Уважаемый клиент" in text


def test_message_ids_are_random_unless_given():
    kwargs = {"to": MAILBOX, "amount_tiyin": 100, "card_last4": "0001", "occurred_at": AT}
    ids = {parse_notification(uzcard_credit_email(**kwargs)).message_id for _ in range(20)}
    assert len(ids) == 20
    note = parse_notification(uzcard_credit_email(**kwargs, message_id="<fixed@x>"))
    assert note.message_id == "<fixed@x>"


def test_same_transaction_twice_has_one_fingerprint():
    kwargs = {
        "to": MAILBOX,
        "amount_tiyin": 5003700,
        "card_last4": "4821",
        "occurred_at": AT,
        "balance_tiyin": 90000000,
    }
    first = parse_notification(uzcard_credit_email(**kwargs))
    second = parse_notification(uzcard_credit_email(**kwargs))
    assert first.message_id != second.message_id
    assert first.fingerprint() == second.fingerprint()


def test_naive_time_is_tashkent_time():
    note = parse_notification(
        uzcard_credit_email(
            to=MAILBOX, amount_tiyin=100, card_last4="0001", occurred_at=datetime(2026, 1, 2, 3, 4)
        )
    )
    assert note.occurred_at == datetime(2026, 1, 2, 3, 4, tzinfo=TASHKENT)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"amount_tiyin": 0},
        {"amount_tiyin": -5},
        {"card_last4": "123"},
        {"card_last4": "12a4"},
        {"counterparty": "EXAMPLEBANK SCHET TO UZCARD"},
    ],
)
def test_builder_refuses_what_would_not_be_a_credit(kwargs):
    base = {"to": MAILBOX, "amount_tiyin": 100, "card_last4": "0001", "occurred_at": AT}
    with pytest.raises(ValueError):
        uzcard_credit_email(**{**base, **kwargs})


def test_unknown_format_is_refused():
    with pytest.raises(ValueError, match="unknown format"):
        credit_notification("kapitalbank-sms", to=MAILBOX)


def test_forwarded_builders_come_from_the_mailbox():
    for fmt in FORWARDED_FORMATS:
        raw = credit_notification(
            fmt, to=MAILBOX, amount_tiyin=100, card_last4="0001", occurred_at=AT
        )
        assert parse_notification(raw, mailbox=MAILBOX).kind == "rejected"
        other = parse_notification(raw, mailbox="someone.else@gmail.com", allow_forwarded=True)
        assert other.kind == "rejected"
