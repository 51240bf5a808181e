"""Every corpus message against expected.json (the shared acceptance corpus)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from autopay_bankmail import parse_notification

CORPUS = Path(__file__).parent / "corpus"
EXPECTED: dict[str, dict] = json.loads((CORPUS / "expected.json").read_text())
KINDS = {"credit", "debit", "reversal", "ignored", "rejected", "unparsed"}


def test_corpus_is_complete():
    assert sorted(p.name for p in CORPUS.glob("*.eml")) == sorted(EXPECTED)
    assert len(EXPECTED) >= 50


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_message(name: str):
    case = EXPECTED[name]
    note = parse_notification(
        (CORPUS / name).read_bytes(),
        mailbox=case["mailbox"],
        allow_forwarded=case["allow_forwarded"],
    )
    assert note.kind in KINDS
    if case["kind"] == "credit":
        assert note.kind == "credit", note.reason
        assert note.amount_tiyin == case["amount_tiyin"]
        assert note.currency == case["currency"]
        assert note.card_last4 == case["card_last4"]
        assert note.occurred_at == datetime.fromisoformat(case["occurred_at"])
        assert note.occurred_at.isoformat() == case["occurred_at"]
        assert note.format == case["format"]
        assert note.message_id and note.message_id.startswith("<")
        assert note.fingerprint()
    else:
        assert note.kind != "credit"
        assert note.reason, "a message that is not a credit must say why"
        assert note.fingerprint() is None


@pytest.mark.parametrize(
    "name", sorted(n for n, c in EXPECTED.items() if c["allow_forwarded"] and c["kind"] == "credit")
)
def test_forwarded_credits_need_the_mailbox_to_allow_forwarders(name: str):
    case = EXPECTED[name]
    raw = (CORPUS / name).read_bytes()
    note = parse_notification(raw, mailbox=case["mailbox"], allow_forwarded=False)
    assert note.kind == "rejected"
    assert note.refusal == "forwarder_disabled"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_mailbox_defaults_to_the_to_address(name: str):
    case = EXPECTED[name]
    raw = (CORPUS / name).read_bytes()
    explicit = parse_notification(
        raw, mailbox=case["mailbox"], allow_forwarded=case["allow_forwarded"]
    )
    default = parse_notification(raw, allow_forwarded=case["allow_forwarded"])
    assert default == explicit


def test_corpus_kinds_are_specific():
    """Spot checks of the non-credit kinds (the `NotificationKind` each one is reported as)."""

    def kind(name: str) -> str:
        case = EXPECTED[name]
        raw = (CORPUS / name).read_bytes()
        return parse_notification(
            raw, mailbox=case["mailbox"], allow_forwarded=case["allow_forwarded"]
        ).kind

    assert kind("013-uzcard-email-not-credit.eml") == "debit"
    assert kind("015-uzcard-email-not-credit.eml") == "reversal"
    assert kind("016-uzcard-email-not-credit.eml") == "reversal"
    assert kind("019-uzcard-email-not-credit.eml") == "rejected"
    assert kind("020-uzcard-email-not-credit.eml") == "rejected"
    assert kind("021-uzcard-email-not-credit.eml") == "rejected"
    assert kind("022-uzcard-email-not-credit.eml") == "rejected"
    assert kind("023-uzcard-email-not-credit.eml") == "ignored"
    assert kind("048-otp-not-credit.eml") == "ignored"
    assert kind("049-uzcard-sms-not-credit.eml") == "rejected"
    assert kind("050-uzcard-email-not-credit.eml") == "ignored"
