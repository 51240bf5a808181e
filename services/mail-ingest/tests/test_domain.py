import random
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from autopay_bankmail import Notification, parse_notification
from autopay_contracts import CreditReceived, CreditRejected
from autopay_mail_ingest.domain import (
    WatchedMailbox,
    backoff_delay,
    build_outcome,
    classify_login_failure,
    credit_id_for,
    header_message_id,
    message_key,
    parse_fetch,
    parse_search,
    parse_select,
)

MAILBOX = WatchedMailbox("mbx1", "shop@gmail.com", 1, "127.0.0.1", 993, True, "shop", "secret")
NOW = datetime(2026, 5, 16, 4, 30, tzinfo=UTC)
RAW = b"Message-ID: <abc@bank.uz>\r\nFrom: x\r\n\r\nbody\r\n"


def _credit(**kw) -> Notification:
    base = dict(
        kind="credit",
        format="uzcard-email",
        amount_tiyin=5_003_700,
        currency="UZS",
        card_last4="6412",
        occurred_at=datetime(2026, 5, 16, 9, 29, tzinfo=UTC),
        balance_tiyin=10_000_000,
        message_id="<abc@bank.uz>",
    )
    return Notification(**(base | kw))


def test_parse_fetch_reads_uid_on_either_side_of_the_literal():
    lines = [
        b'1 FETCH (UID 101 INTERNALDATE "16-May-2026 04:30:00 +0000" BODY[] {5}',
        bytearray(b"first"),
        b")",
        b"2 FETCH (BODY[] {6}",
        bytearray(b"second"),
        b" UID 102)",
        b"UID FETCH completed.",
    ]
    messages = parse_fetch(lines)
    assert [(m.uid, m.raw) for m in messages] == [(101, b"first"), (102, b"second")]
    assert messages[0].internal_date == NOW
    assert messages[1].internal_date is None


def test_parse_search_and_select():
    assert parse_search([b"SEARCH 7 3 5", b"UID SEARCH completed."]) == [3, 5, 7]
    assert parse_search([b"102", b"UID SEARCH completed."]) == [102]
    assert parse_search([b"UID SEARCH completed."]) == []
    selected = parse_select(
        [b"2 EXISTS", b"OK [UIDNEXT 103] x", b"OK [UIDVALIDITY 99] UIDs valid."]
    )
    assert (selected.uidvalidity, selected.uidnext) == (99, 103)


def test_login_failures_are_classified():
    assert classify_login_failure("[AUTHENTICATIONFAILED] Invalid credentials (Failure)") == "auth"
    assert (
        classify_login_failure("[ALERT] Application-specific password required: https://x")
        == "auth"
    )
    assert classify_login_failure("[ALERT] Too many simultaneous connections.") == "throttled"
    assert classify_login_failure("[UNAVAILABLE] try later") == "other"


def test_backoff_is_capped_and_jittered():
    rng = random.Random(1)
    delays = [backoff_delay(n, 1.0, 60.0, rng) for n in range(12)]
    assert 0.5 <= delays[0] <= 1.0
    assert all(30.0 <= d <= 60.0 for d in delays[7:])
    assert len({round(d, 6) for d in delays[7:]}) > 1


def test_credit_identity_is_deterministic_and_content_based():
    outcome = build_outcome(_credit(), mailbox=MAILBOX, raw=RAW, received_at=NOW, evidence_ref="ev")
    assert isinstance(outcome.event, CreditReceived)
    again = build_outcome(
        _credit(message_id="<other@bank.uz>"),
        mailbox=MAILBOX,
        raw=RAW + b"x",
        received_at=NOW,
        evidence_ref="ev",
    )
    assert again.event.credit.credit_id == outcome.event.credit.credit_id
    assert outcome.fingerprint == again.fingerprint
    assert outcome.message_key != again.message_key
    other_box = credit_id_for("mbx2", outcome.fingerprint, "<abc@bank.uz>", RAW)
    assert other_box != outcome.event.credit.credit_id


def test_incomplete_or_invalid_credit_is_rejected_not_published_as_credit():
    for bad in (_credit(currency=None), _credit(card_last4="64a2"), _credit(amount_tiyin=0)):
        outcome = build_outcome(bad, mailbox=MAILBOX, raw=RAW, received_at=NOW, evidence_ref=None)
        assert isinstance(outcome.event, CreditRejected)
        assert outcome.event.kind == "rejected" and outcome.event.reason


def test_message_key_falls_back_to_the_bytes():
    assert header_message_id(b"Message-ID:\r\n <a@b>\r\nX: y\r\n\r\nbody") == "<a@b>"
    assert header_message_id(b"Subject: hi\r\n\r\nMessage-ID: <not-a-header>") is None
    assert message_key(None, b"one") != message_key(None, b"two")
    assert message_key("<A@b>", b"one") == message_key("<a@b>", b"two")


# --- fuzz: whatever a mailbox holds, turning it into an event never raises ----------------


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=2000))
def test_any_bytes_become_exactly_one_event(raw: bytes):
    notification = parse_notification(raw, mailbox=MAILBOX.gmail)
    outcome = build_outcome(
        notification, mailbox=MAILBOX, raw=raw, received_at=NOW, evidence_ref="ev"
    )
    assert isinstance(outcome.event, CreditReceived | CreditRejected)
    assert outcome.message_key.startswith(("mid:", "raw:"))
    header_message_id(raw)


@settings(max_examples=200, deadline=None)
@given(
    lines=st.lists(
        st.one_of(st.binary(max_size=200), st.binary(max_size=200).map(bytearray)), max_size=8
    )
)
def test_any_imap_response_lines_are_read_without_raising(lines):
    for message in parse_fetch(lines):
        assert message.uid >= 0
    assert all(uid >= 0 for uid in parse_search(lines))
