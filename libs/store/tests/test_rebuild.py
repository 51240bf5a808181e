"""Rebuilding the order book from the streams: the pure folding, then against real NATS + Redis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from autopay_contracts import (
    CreditAmbiguous,
    CreditMatched,
    CreditReceived,
    CreditUnmatched,
    Order,
    OrderCancelled,
    OrderCreated,
    OrderExpired,
    OrderPaid,
    legacy_mailbox_id_for,
    stream_for,
)
from autopay_store.keys import Keys
from autopay_store.orders import AmountReserved, OrderBook, OrderRecord
from autopay_store.rebuild import (
    fold_decisions,
    fold_orders,
    rebuild_orders,
    sequence_floor,
)
from autopay_testing.builders import CARD, MBX, T0, credit, order

Q = 900


def paid(o: Order, credit_id: str, at: datetime, late: bool = False) -> OrderPaid:
    return OrderPaid(order=o, credit_id=credit_id, paid_at=at, late=late)


# --- pure folding -------------------------------------------------------------------------


def test_a_created_order_is_waiting():
    o = order("10001")
    assert fold_orders([OrderCreated(order=o)]) == {"10001": OrderRecord(order=o, status="waiting")}


def test_paid_records_credit_time_and_end():
    o, at = order("10001"), T0 + timedelta(minutes=1)
    records = fold_orders([OrderCreated(order=o), paid(o, "c1", at)])
    assert records["10001"] == OrderRecord(
        order=o, status="paid", paid_at=at, credit_id="c1", ended_at=at
    )


def test_expired_then_late_paid_ends_paid_and_late():
    o = order("10001")
    expired_at, paid_at = o.expires_at, o.expires_at + timedelta(minutes=2)
    # even if the event itself did not say late, paying an expired order is late
    events = [OrderCreated(order=o), OrderExpired(order=o, expired_at=expired_at)]
    records = fold_orders([*events, paid(o, "c1", paid_at, late=False)])
    assert records["10001"] == OrderRecord(
        order=o, status="paid", paid_at=paid_at, credit_id="c1", late=True, ended_at=paid_at
    )


def test_cancelled_stays_cancelled():
    o, at = order("10001"), T0 + timedelta(seconds=30)
    events = [
        OrderCreated(order=o),
        OrderCancelled(order=o, cancelled_at=at),
        OrderExpired(order=o, expired_at=o.expires_at),
        paid(o, "c1", at + timedelta(seconds=5)),
    ]
    assert fold_orders(events)["10001"] == OrderRecord(order=o, status="cancelled", ended_at=at)


def test_a_paid_order_keeps_its_first_credit_and_is_not_expired_after():
    o, at = order("10001"), T0 + timedelta(minutes=1)
    events = [
        OrderCreated(order=o),
        paid(o, "c1", at),
        paid(o, "c2", at + timedelta(seconds=1)),
        OrderExpired(order=o, expired_at=o.expires_at),
    ]
    record = fold_orders(events)["10001"]
    assert (record.status, record.credit_id, record.paid_at) == ("paid", "c1", at)


def test_replayed_events_change_nothing():
    a, b = order("10001"), order("10002", amount=1_000_000)
    events = [
        OrderCreated(order=a),
        OrderCreated(order=b),
        OrderExpired(order=b, expired_at=b.expires_at),
        paid(a, "c1", T0 + timedelta(minutes=1)),
    ]
    assert fold_orders(events + events + list(reversed(events[:2]))) == fold_orders(events)


def test_an_order_whose_created_event_is_gone_is_rebuilt_from_a_later_event():
    o = order("10001")
    record = fold_orders([OrderExpired(order=o, expired_at=o.expires_at)])["10001"]
    assert record == OrderRecord(order=o, status="expired", ended_at=o.expires_at)


def test_decisions_keep_the_first_outcome_per_credit():
    at = T0 + timedelta(minutes=1)
    events = [
        (CreditReceived(credit=credit("c0")), at),
        (CreditMatched(credit=credit("c1"), order_id="10001", merchant_id="7"), at),
        (CreditUnmatched(credit=credit("c1"), reason="later replay"), at + timedelta(1)),
        (CreditUnmatched(credit=credit("c2"), reason="no order"), at),
        (CreditAmbiguous(credit=credit("c3"), candidate_order_ids=("10001", "10002")), at),
    ]
    decisions = fold_decisions(events)
    assert {k[2]: d.outcome for k, d in decisions.items()} == {
        "c1": {"kind": "matched", "order_id": "10001"},
        "c2": {"kind": "unmatched", "reason": "no order"},
        "c3": {"kind": "ambiguous", "candidates": ["10001", "10002"]},
    }
    assert all(d.decided_at == at for d in decisions.values())


def test_sequence_floor():
    assert sequence_floor([]) == 0
    assert sequence_floor(["10003", "10041", "10007", "manual-x"]) == 41


# --- against NATS + Redis -----------------------------------------------------------------


async def _publish(js, namespace, *events) -> None:
    for event in events:
        ack = await js.publish(
            event.subject(namespace),
            event.to_bytes(),
            stream=stream_for(event).name(namespace),
            headers={"content-type": "application/json", **event.headers()},
        )
        assert not ack.duplicate


async def test_rebuild_from_streams(nats_client, namespace, streams, redis_client, redis_prefix):
    js = nats_client.jetstream()
    now = datetime.now(UTC).replace(microsecond=0)
    t0 = now - timedelta(minutes=10)
    a = order("10001", amount=1_000_100, at=t0)  # paid
    b = order("10002", amount=1_000_200, at=t0)  # expired, then paid late
    c = order("10003", amount=1_000_300, at=t0)  # cancelled
    d = order("10004", amount=1_000_400, at=now - timedelta(minutes=1))  # still waiting
    pay_a = t0 + timedelta(minutes=1)
    late_b = b.expires_at + timedelta(minutes=2)
    cancel_c = t0 + timedelta(seconds=40)
    ca = credit("cr-a", amount=a.amount_tiyin, bank=pay_a)
    cb = credit("cr-b", amount=b.amount_tiyin, bank=b.expires_at)
    cx = credit("cr-x", amount=777_700, bank=pay_a)
    await _publish(
        js,
        namespace,
        *(OrderCreated(order=o) for o in (a, b, c, d)),
        OrderCancelled(order=c, cancelled_at=cancel_c),
        paid(a, ca.credit_id, pay_a),
        OrderExpired(order=b, expired_at=b.expires_at),
        paid(b, cb.credit_id, late_b, late=True),
    )
    await _publish(
        js,
        namespace,
        CreditReceived(credit=ca),
        CreditMatched(credit=ca, order_id="10001", merchant_id="7"),
        CreditReceived(credit=cx),
        CreditUnmatched(credit=cx, reason="no order holds this amount on this card"),
        CreditMatched(credit=cb, order_id="10002", merchant_id="7", late=True),
    )

    book = OrderBook(redis_client, Keys(redis_prefix), quarantine_s=Q)
    expected = {
        "10001": OrderRecord(
            order=a, status="paid", paid_at=pay_a, credit_id=ca.credit_id, ended_at=pay_a
        ),
        "10002": OrderRecord(
            order=b,
            status="paid",
            paid_at=late_b,
            credit_id=cb.credit_id,
            late=True,
            ended_at=late_b,
        ),
        "10003": OrderRecord(order=c, status="cancelled", ended_at=cancel_c),
        "10004": OrderRecord(order=d, status="waiting"),
    }

    report = await rebuild_orders(js, namespace, book)
    assert report.orders == {"paid": 2, "cancelled": 1, "waiting": 1}
    assert report.decisions == 3
    for order_id, record in expected.items():
        assert await book.get(order_id) == record

    assert await book.due(d.expires_at) == ["10004"]
    with pytest.raises(AmountReserved):
        await book.create(order("20001", amount=d.amount_tiyin, at=now))
    with pytest.raises(AmountReserved):  # paid at t0+1 min: still in quarantine
        await book.create(order("20002", amount=a.amount_tiyin, at=now))
    assert int(await book.next_order_id()) > 10004

    replay = await book.match_credit(ca, now)
    assert (replay.kind, replay.original) == ("duplicate", "matched")
    assert replay.record == expected["10001"]
    unmatched = await book.match_credit(cx, now)
    assert (unmatched.kind, unmatched.original) == ("duplicate", "unmatched")

    again = await rebuild_orders(js, namespace, book)
    assert again.decisions == 0
    for order_id, record in expected.items():
        assert await book.get(order_id) == record
    assert int(await book.next_order_id()) > 10005  # the sequence was not lowered


async def test_rebuild_keeps_an_order_redis_has_further_along(
    nats_client, namespace, streams, redis_client, redis_prefix
):
    """The order was paid in Redis but its `order.paid` is not in the stream yet: the rebuild
    must not put it back to waiting."""
    js = nats_client.jetstream()
    now = datetime.now(UTC).replace(microsecond=0)
    o = order("10001", at=now - timedelta(minutes=1))
    await _publish(js, namespace, OrderCreated(order=o))
    book = OrderBook(redis_client, Keys(redis_prefix), quarantine_s=Q)
    await book.create(o)
    outcome = await book.match_credit(credit("c1", amount=o.amount_tiyin, bank=now), now)
    assert outcome.kind == "matched"

    report = await rebuild_orders(js, namespace, book)
    assert (report.kept, report.orders) == (1, {})
    assert (await book.get("10001")) == outcome.record


async def test_rebuild_of_empty_streams_writes_nothing(
    nats_client, namespace, streams, redis_client, redis_prefix
):
    book = OrderBook(redis_client, Keys(redis_prefix), quarantine_s=Q)
    report = await rebuild_orders(nats_client.jetstream(), namespace, book)
    assert (report.orders, report.decisions, report.order_sequence) == ({}, 0, 0)
    assert await book.next_order_id() == "10001"


async def test_orders_ended_before_the_retention_are_not_restored(
    nats_client, namespace, streams, redis_client, redis_prefix
):
    js = nats_client.jetstream()
    now = datetime.now(UTC).replace(microsecond=0)
    old = order("10001", at=now - timedelta(days=40))
    await _publish(
        js,
        namespace,
        OrderCreated(order=old),
        OrderExpired(order=old, expired_at=old.expires_at),
    )
    book = OrderBook(redis_client, Keys(redis_prefix), quarantine_s=Q, retention_s=30 * 86400)
    report = await rebuild_orders(js, namespace, book, now=now)
    assert (report.aged_out, report.orders) == (1, {})
    assert await book.get("10001") is None
    assert await book.next_order_id() == "10002"


async def test_rebuild_puts_orders_of_old_mailbox_ids_on_the_normalized_ids(
    nats_client, namespace, streams, redis_client, redis_prefix
):
    """Streams written before addresses were normalized carry old mailbox ids: the rebuilt
    order, its hold and the credit's decision land where the services now look."""
    js = nats_client.jetstream()
    now = datetime.now(UTC).replace(microsecond=0)
    dotted = "K.Arta@gmail.com"
    legacy = {"mailbox_id": legacy_mailbox_id_for(dotted), "gmail": dotted.lower()}
    waiting = order("10001", at=now - timedelta(minutes=1), **legacy)
    paid_order = order("10002", amount=1_000_200, at=now - timedelta(minutes=2), **legacy)
    paying = credit(
        "cr-1", amount=paid_order.amount_tiyin, bank=now - timedelta(minutes=1), **legacy
    )
    await _publish(
        js,
        namespace,
        OrderCreated(order=waiting),
        OrderCreated(order=paid_order),
        paid(paid_order, paying.credit_id, now - timedelta(minutes=1)),
    )
    await _publish(js, namespace, CreditMatched(credit=paying, order_id="10002", merchant_id="7"))

    keys = Keys(redis_prefix)
    book = OrderBook(redis_client, keys, quarantine_s=Q)
    await rebuild_orders(js, namespace, book)

    new = {"mailbox_id": MBX, "gmail": "karta@gmail.com"}
    assert (await book.get("10001")).order == waiting.model_copy(update=new)
    assert (await book.get("10002")).order == paid_order.model_copy(update=new)
    assert await redis_client.hget(keys.card(MBX, CARD, "holds"), str(waiting.amount_tiyin))
    replay = await book.match_credit(paying.model_copy(update=new), now)
    assert (replay.kind, replay.original) == ("duplicate", "matched")
    assert not [k async for k in redis_client.scan_iter(match=f"*{legacy['mailbox_id']}*")]
