"""`parse_notification` never raises, and a credit is always well-formed."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autopay_bankmail import parse_notification
from autopay_bankmail.authres import parse as parse_authentication_results

CORPUS = Path(__file__).parent / "corpus"
EXPECTED: dict[str, dict] = json.loads((CORPUS / "expected.json").read_text())
MESSAGES = [(CORPUS / name).read_bytes() for name in sorted(EXPECTED)]
KINDS = {"credit", "debit", "reversal", "ignored", "rejected", "unparsed"}
FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check(raw: bytes, **kw) -> None:
    note = parse_notification(raw, **kw)
    assert note.kind in KINDS
    if note.kind == "credit":
        assert isinstance(note.amount_tiyin, int)
        assert note.amount_tiyin > 0
        assert note.currency == "UZS"
        assert note.card_last4 is not None
        assert len(note.card_last4) == 4
        assert note.card_last4.isdigit()
        assert note.occurred_at is not None
        assert note.occurred_at.utcoffset() == timedelta(hours=5)
        assert note.fingerprint()
    else:
        assert note.reason


@FUZZ
@given(raw=st.binary(max_size=4096), forwarded=st.booleans())
def test_random_bytes(raw, forwarded):
    check(raw, allow_forwarded=forwarded)


@FUZZ
@given(
    index=st.integers(0, len(MESSAGES) - 1),
    flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=8),
)
def test_byte_flips(index, flips):
    raw = bytearray(MESSAGES[index])
    for position, value in flips:
        raw[position % len(raw)] = value
    check(bytes(raw), allow_forwarded=True)


@FUZZ
@given(index=st.integers(0, len(MESSAGES) - 1), data=st.data())
def test_truncation(index, data):
    raw = MESSAGES[index]
    start = data.draw(st.integers(0, len(raw)))
    end = data.draw(st.integers(start, len(raw)))
    check(raw[:end], allow_forwarded=True)
    check(raw[start:], allow_forwarded=True)


@FUZZ
@given(
    index=st.integers(0, len(MESSAGES) - 1),
    line=st.integers(0, 40),
    times=st.integers(1, 3),
    insert=st.binary(max_size=64),
)
def test_header_duplication_and_insertion(index, line, times, insert):
    head, _, body = MESSAGES[index].partition(b"\n\n")
    lines = head.split(b"\n")
    picked = lines[line % len(lines)]
    lines[line % len(lines) : line % len(lines)] = [picked] * times + [insert]
    check(b"\n".join(lines) + b"\n\n" + body, allow_forwarded=True)


def test_duplicated_from_is_never_a_credit():
    raw = MESSAGES[0]
    duplicated = raw.replace(
        b"From: UZCARD <noreply@info.uzcard.uz>",
        b"From: UZCARD <noreply@info.uzcard.uz>\nFrom: UZCARD <noreply@info.uzcard.uz>",
    )
    assert parse_notification(raw).kind == "credit"
    assert parse_notification(duplicated).kind == "rejected"


def test_pathological_inputs():
    check(b"")
    check(b"\x00" * 1000)
    check(b"From: x\n" * 5000)
    check(
        b"Content-Type: multipart/mixed; boundary=a\n\n" + b"--a\nContent-Type: multipart/mixed;"
        b" boundary=a\n\n" * 2000
    )
    check(MESSAGES[0] + b"A" * (2 << 20))
    check(("\U0001f4b3" * 20000 + "\u2795" * 20000).encode())
    note = parse_notification("not bytes")  # type: ignore[arg-type]
    assert note.kind == "unparsed"


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("subject", "body"),
    [
        ("SMS from x" + " " * 200_000 + "y", "hi"),
        ("SMS from UZCARD", "From: a" + " " * 200_000 + "b\nMessage: x"),
        ("SMS from UZCARD", "Perevod na kartu: summa:" + "1 " * 200_000 + "x"),
        ("SMS from HUMO", "HUMOCARD *1234: popolnenie " + "1 " * 200_000 + "x;"),
        ("SMS from HUMOcardbot", "💳 HUMOCARD *1234 ➕ " + "1 " * 200_000 + "x"),
        ("SMS from HUMOcardbot", "💳 HUMOCARD *1234 ➕ " + "**a" * 200_000),
        ("SMS from UZCARD", "karta " + "*" * 200_000 + " karta" * 1000),
        ("UZCARD INFO", "12.12.12" + " " * 200_000 + "x\n" * 100),
    ],
)
def test_long_adversarial_inputs_stay_linear(subject, body):
    raw = (
        f"From: a@gmail.com\nTo: a@gmail.com\nSubject: {subject}\n"
        f"Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n{body}"
    ).encode()
    check(raw, allow_forwarded=True)


@pytest.mark.timeout(30)
def test_long_authentication_results_header():
    assert parse_authentication_results("mx.google.com; " + "a" * 500_000) is not None
    assert parse_authentication_results("x; " + "a=" * 200_000 + "(" * 100_000) is not None
