import random
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from autopay_bankmail import Notification, parse_notification
from autopay_contracts import CreditReceived, CreditRejected
from autopay_mail_ingest.domain import (
    REJECTION_LABELS,
    ScreenedMessage,
    WatchedMailbox,
    backoff_delay,
    build_outcome,
    classify_login_failure,
    credit_id_for,
    fetch_refusal_is_transient,
    header_message_id,
    message_key,
    parse_fetch,
    parse_screen,
    parse_search,
    parse_select,
    rejection_label,
    screen,
    too_large_outcome,
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


def test_parse_screen_reads_size_date_and_headers_and_merges_a_uid():
    lines = [
        b'1 FETCH (UID 101 RFC822.SIZE 20971520 INTERNALDATE "16-May-2026 04:30:00 +0000" '
        b"BODY[HEADER.FIELDS (FROM MESSAGE-ID)]<0> {40}",
        bytearray(b"From: a@b.c\r\nMessage-ID: <UID 999 x>\r\n\r\n"),
        b")",
        b"2 FETCH (FLAGS (\\Seen) UID 102)",  # an unsolicited update, then the asked-for items
        b"2 FETCH (UID 102 RFC822.SIZE 77 BODY[HEADER.FIELDS (FROM MESSAGE-ID)]<0> {2}",
        bytearray(b"\r\n"),
        b")",
        b"3 FETCH (UID 103 RFC822.SIZE 1" + b"9" * 40 + b" BODY[HEADER.FIELDS (FROM)] NIL)",
        b"UID FETCH completed.",
    ]
    screened = parse_screen(lines)
    assert sorted(screened) == [101, 102, 103]
    assert screened[101].size == 20971520 and screened[101].internal_date == NOW
    assert screened[101].header.startswith(b"From: a@b.c")
    assert (screened[102].size, screened[102].header) == (77, b"\r\n")
    assert (screened[103].size, screened[103].header) == (None, None)


def test_screening_decides_by_sender_and_size():
    bank = b"From: UZCARD <noreply@info.uzcard.uz>\r\nMessage-ID: <m@bank>\r\n\r\n"
    own = b"From: Shop <s.hop+sms@gmail.com>\r\n\r\n"
    friend = b"From: friend@example.com\r\n\r\n"
    forwarding = WatchedMailbox(**{**MAILBOX.__dict__, "allow_forwarded": True})

    def decide(header, size=100, mailbox=MAILBOX, date=NOW, cutoff=None):
        return screen(
            ScreenedMessage(1, size, date, header), mailbox=mailbox, max_bytes=1000, cutoff=cutoff
        )

    assert decide(bank) == "candidate"
    assert decide(bank, size=None) == "candidate"  # the bounded read still caps it
    assert decide(bank, size=1001) == "too_large"
    assert decide(friend) == decide(friend, size=10**9) == "personal"
    assert decide(own) == "personal"
    assert decide(own, mailbox=forwarding) == "candidate"
    assert decide(None) == "unscreened"
    assert screen(None, mailbox=MAILBOX, max_bytes=1000) == "unscreened"
    assert decide(bank, cutoff=NOW.replace(hour=5)) == "old"
    assert decide(b"\xff\x00garbage\r\n\r\n") == "personal"


def test_too_large_is_refused_from_headers_with_a_stable_identity():
    header = b"From: noreply@info.uzcard.uz\r\nMessage-ID: <big@bank>\r\n\r\n"
    message = ScreenedMessage(9, 20 << 20, NOW, header)
    first = too_large_outcome(
        message, mailbox=MAILBOX, size=20 << 20, max_bytes=1000, received_at=NOW
    )
    again = too_large_outcome(
        message, mailbox=MAILBOX, size=20 << 20, max_bytes=1000, received_at=NOW
    )
    event = first.event
    assert isinstance(event, CreditRejected)
    assert (event.kind, event.refusal, event.message_id) == ("rejected", "too_large", "<big@bank>")
    assert event.evidence_ref is None
    assert event.record_id == again.event.record_id and first.message_key == again.message_key
    assert rejection_label(event) == "too_large"


def test_rejection_labels_come_from_fixed_sets():
    refused = build_outcome(
        Notification(kind="rejected", reason="forged", refusal="forged"),
        mailbox=MAILBOX,
        raw=RAW,
        received_at=NOW,
        evidence_ref=None,
    ).event
    assert (refused.refusal, rejection_label(refused)) == ("forged", "forged")
    odd = build_outcome(
        Notification(kind="rejected", reason="x", refusal="made-up"),
        mailbox=MAILBOX,
        raw=RAW,
        received_at=NOW,
        evidence_ref=None,
    ).event
    assert odd.refusal is None and rejection_label(odd) == "rejected"
    ignored = build_outcome(
        Notification(kind="ignored"), mailbox=MAILBOX, raw=RAW, received_at=NOW, evidence_ref=None
    ).event
    assert rejection_label(ignored) == "ignored"
    assert rejection_label(ignored.model_copy(update={"kind": "weird"})) == "other"
    assert {"too_large", "unparsed", "other"} <= set(REJECTION_LABELS)


def test_a_refused_fetch_is_transient_only_when_the_server_says_so():
    assert fetch_refusal_is_transient("[THROTTLED] Account exceeded command limits")
    assert fetch_refusal_is_transient("[UNAVAILABLE] Temporary failure")
    assert not fetch_refusal_is_transient("Some messages could not be FETCHed (Failure)")


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


def test_a_rejection_never_marks_a_genuine_notification_as_seen():
    """A forgery mailed first under the Message-ID the bank's notification will carry is
    rejected; its dedup marker must differ from the genuine credit's."""
    forged = build_outcome(
        Notification(kind="rejected", reason="forged", refusal="forged", message_id="<n@bank>"),
        mailbox=MAILBOX,
        raw=RAW,
        received_at=NOW,
        evidence_ref=None,
    )
    genuine = build_outcome(
        _credit(message_id="<n@bank>"), mailbox=MAILBOX, raw=RAW, received_at=NOW, evidence_ref=None
    )
    big = too_large_outcome(
        ScreenedMessage(3, 1 << 30, NOW, b"Message-ID: <n@bank>\r\n\r\n"),
        mailbox=MAILBOX,
        size=1 << 30,
        max_bytes=1000,
        received_at=NOW,
    )
    assert genuine.is_credit
    assert genuine.message_key not in (forged.message_key, big.message_key)


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
    assert outcome.message_key.startswith(("mid:", "raw:", "rj:mid:", "rj:raw:"))
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
    for uid, message in parse_screen(lines).items():
        assert uid == message.uid >= 0
        screen(message, mailbox=MAILBOX, max_bytes=1000)
    assert all(uid >= 0 for uid in parse_search(lines))
