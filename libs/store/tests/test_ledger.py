"""The transactions ledger against real Redis: records, the rules of their updates, paging."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from autopay_contracts import CreditAmbiguous, CreditMatched, CreditRejected, CreditUnmatched
from autopay_store.keys import Keys
from autopay_store.ledger import (
    LATE_REASON,
    AlreadyMatched,
    Ledger,
    UnknownTransaction,
    rejection_of,
    transaction_of,
)
from autopay_testing import builders

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


@pytest.fixture
def ledger(redis_client, redis_prefix) -> Ledger:
    return Ledger(redis_client, Keys(redis_prefix))


def credit(cid: str, minutes: int = 0, **kw):
    return builders.credit(cid, bank=T0 + timedelta(minutes=minutes), **kw)


def test_decisions_become_records_of_their_status():
    unmatched = transaction_of(CreditUnmatched(credit=credit("a"), reason="x", merchant_id="7"))
    late = transaction_of(CreditUnmatched(credit=credit("b"), reason=LATE_REASON, merchant_id="7"))
    ambiguous = transaction_of(
        CreditAmbiguous(credit=credit("c"), candidate_order_ids=("1", "2"), merchant_id="7")
    )
    matched = transaction_of(
        CreditMatched(credit=credit("d"), order_id="10001", merchant_id="7", late=True)
    )
    assert [t.status for t in (unmatched, late, ambiguous, matched)] == [
        "unmatched",
        "late",
        "ambiguous",
        "matched",
    ]
    assert ambiguous.candidates == ("1", "2") and matched.order_id == "10001" and matched.late
    assert unmatched.matchable and not matched.matchable
    assert unmatched.as_credit() == credit("a")


def test_rejections_are_recorded_but_not_ignored_mail():
    base = dict(record_id="rj1", mailbox_id=builders.MBX, gmail=builders.GMAIL, received_at=T0)
    forged = CreditRejected(**base, kind="rejected", reason="no DKIM", refusal="forged")
    assert rejection_of(forged, "7").reason == "forged: no DKIM"
    assert rejection_of(CreditRejected(**base, kind="ignored", reason="personal"), "7") is None


async def test_a_matched_record_is_final_and_a_dismissal_survives(ledger):
    unmatched = CreditUnmatched(credit=credit("a"), reason="x", merchant_id="7")
    assert await ledger.record(transaction_of(unmatched)) == "created"
    dismissed = await ledger.dismiss("7", "a", T0, "key1")
    assert dismissed.dismissed_by == "key1" and not dismissed.matchable
    assert await ledger.record(transaction_of(unmatched)) == "updated"  # a replay
    assert (await ledger.get("7", "a")).dismissed_at == T0

    matched = CreditMatched(credit=credit("a"), order_id="10001", merchant_id="7", manual=True)
    await ledger.record(transaction_of(matched))
    assert await ledger.record(transaction_of(unmatched)) == "kept"
    record = await ledger.get("7", "a")
    assert (record.status, record.order_id, record.manual) == ("matched", "10001", True)
    with pytest.raises(AlreadyMatched):
        await ledger.dismiss("7", "a", T0, "key1")
    with pytest.raises(UnknownTransaction):
        await ledger.dismiss("7", "nope", T0, "key1")
    assert await ledger.get("8", "a") is None  # another merchant's ledger


async def test_pages_are_newest_first_with_a_cursor_filters_and_since(ledger):
    for i in range(7):
        event = CreditUnmatched(credit=credit(f"c{i}", minutes=i), reason="x", merchant_id="7")
        await ledger.record(transaction_of(event))
    tied = [credit(f"t{i}", minutes=10) for i in range(3)]  # three at the same moment
    for c in tied:
        await ledger.record(transaction_of(CreditMatched(credit=c, order_id="1", merchant_id="7")))

    seen, cursor = [], None
    while True:
        page = await ledger.page("7", limit=3, cursor=cursor)
        seen += [t.id for t in page.transactions]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen[:3] == ["t2", "t1", "t0"]
    assert seen[3:] == [f"c{i}" for i in range(6, -1, -1)]

    matched = await ledger.page("7", status="matched", limit=10)
    assert [t.id for t in matched.transactions] == ["t2", "t1", "t0"]
    recent = await ledger.page("7", since=T0 + timedelta(minutes=5), limit=50)
    assert {t.id for t in recent.transactions} == {"c5", "c6", "t0", "t1", "t2"}
