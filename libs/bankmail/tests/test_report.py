"""`autopay parse-mail` records."""

from __future__ import annotations

import json
from pathlib import Path

from autopay_bankmail.report import RECORD_KEYS, parse_mail_records

CORPUS = Path(__file__).parent / "corpus"


def test_records_in_order_with_exact_keys():
    paths = [CORPUS / "002-uzcard-email-credit.eml", CORPUS / "013-uzcard-email-not-credit.eml"]
    records = parse_mail_records(paths, None, False)
    assert [r["file"] for r in records] == [str(p) for p in paths]
    assert all(tuple(r) == RECORD_KEYS for r in records)
    assert records[0] == {
        "file": str(paths[0]),
        "kind": "credit",
        "amount_tiyin": 2502100,
        "currency": "UZS",
        "card_last4": "4391",
        "occurred_at": "2026-06-19T02:54:00+05:00",
        "format": "uzcard-email",
        "reason": records[0]["reason"],
    }
    assert records[1]["kind"] == "debit"
    assert records[1]["reason"]
    json.dumps(records)


def test_mailbox_and_forwarders_are_passed_through():
    path = [CORPUS / "024-uzcard-sms-credit.eml"]
    assert parse_mail_records(path, None, False)[0]["kind"] == "rejected"
    assert parse_mail_records(path, None, True)[0]["kind"] == "credit"
    assert parse_mail_records(path, "other@gmail.com", True)[0]["kind"] == "rejected"


def test_unreadable_files_give_unparsed_records(tmp_path):
    missing = tmp_path / "missing.eml"
    empty = tmp_path / "empty.eml"
    empty.write_bytes(b"")
    records = parse_mail_records([missing, tmp_path, empty], None, False)
    assert [r["kind"] for r in records[:2]] == ["unparsed", "unparsed"]
    assert "cannot read file" in records[0]["reason"]
    assert records[0]["amount_tiyin"] is None
    assert records[0]["occurred_at"] is None
    assert records[2]["kind"] == "ignored"
    assert [r["file"] for r in records] == [str(missing), str(tmp_path), str(empty)]


def test_aliases_and_refusal_codes(tmp_path):
    from datetime import datetime

    from autopay_contracts.local_time import TASHKENT
    from autopay_testing.hostile_mail import genuine_cases

    when = datetime(2026, 5, 16, 9, 1, tzinfo=TASHKENT)
    case = next(c for c in genuine_cases("karta@gmail.com", "6412", 100, when) if c.aliases)
    path = tmp_path / "alias.eml"
    path.write_bytes(case.raw)
    refused = parse_mail_records([path], "karta@gmail.com", False)[0]
    assert (refused["kind"], refused["reason"].split(":")[0]) == ("rejected", "replayed")
    accepted = parse_mail_records([path], "karta@gmail.com", False, case.aliases)[0]
    assert accepted["kind"] == "credit"
