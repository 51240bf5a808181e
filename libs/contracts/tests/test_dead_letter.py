from datetime import UTC, datetime

from autopay_contracts import DeadLetter, Namespace, parse_event, stream_for
from autopay_contracts.streams import DEADLETTERS

NOW = datetime(2026, 5, 16, 4, 30, tzinfo=UTC)


def _letter(**kw) -> DeadLetter:
    base = dict(
        service="matcher",
        source_stream="AUTOPAY_CREDITS",
        source_subject="autopay.v1.credit.mbx1.received",
        source_seq=42,
        reason="undecodable: not JSON",
        recorded_at=NOW,
        data="bm9wZQ==",
        source_headers={"Nats-Msg-Id": "x"},
    )
    return DeadLetter(**(base | kw))


def test_dead_letter_id_is_the_source_message_not_the_attempt():
    first = _letter()
    again = _letter(reason="recorded again", recorded_at=NOW.replace(hour=5))
    assert first.event_id == again.event_id
    assert _letter(source_seq=43).event_id != first.event_id
    assert _letter(service="notifier").event_id != first.event_id


def test_dead_letter_subject_stream_and_round_trip():
    letter = _letter()
    assert letter.subject(Namespace()) == "autopay.v1.deadletter.matcher.recorded"
    assert stream_for(letter) is DEADLETTERS
    assert DEADLETTERS.subjects(Namespace()) == ["autopay.v1.deadletter.>"]
    assert parse_event(letter.to_bytes()) == letter
    assert letter.headers()["Nats-Msg-Id"] == letter.event_id  # not the original's id
