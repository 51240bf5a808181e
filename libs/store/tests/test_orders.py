"""The order book against a real Redis: reservations, matching rules, transitions, races."""

import asyncio
from datetime import timedelta

import pytest

from autopay_contracts import mailbox_id_for
from autopay_store.keys import Keys
from autopay_store.orders import (
    AmountReserved,
    NoFreeAmount,
    OrderBook,
    OrderRecord,
    TransitionNotAllowed,
)
from autopay_testing.builders import MBX, T0, credit, order

Q = 900


@pytest.fixture
def book(redis_client, redis_prefix) -> OrderBook:
    return OrderBook(redis_client, Keys(redis_prefix), quarantine_s=Q)


async def test_order_ids_start_at_10001_and_increase(book):
    assert [await book.next_order_id() for _ in range(3)] == ["10001", "10002", "10003"]


async def test_create_then_get_round_trips_the_order(book):
    o = order("10001", client_user_data={"plan": "premium"}, client_user_id="u1")
    created = await book.create(o)
    assert created == OrderRecord(order=o, status="waiting")
    assert await book.get("10001") == created
    assert await book.get("99999") is None


async def test_create_is_idempotent_for_the_same_order_id(book):
    first = await book.create(order("10001"))
    assert await book.create(order("10001")) == first


async def test_same_amount_on_another_card_or_mailbox_is_fine(book):
    await book.create(order("10001"))
    await book.create(order("10002", card_last4="9999"))
    other = "other@gmail.com"
    await book.create(order("10003", gmail=other, mailbox_id=mailbox_id_for(other)))
    assert (await book.get("10003")).status == "waiting"


async def test_same_amount_same_card_is_reserved_across_merchants(book):
    await book.create(order("10001", merchant_id="7"))
    with pytest.raises(AmountReserved):
        await book.create(order("10002", merchant_id="8"))
    assert await book.get("10002") is None
    assert await book.due(T0 + timedelta(hours=1)) == ["10001"]


@pytest.mark.parametrize("ending", ["paid", "expired", "cancelled"])
async def test_quarantine_holds_the_amount_after_the_order_ends_then_releases(book, ending):
    await book.create(order("10001"))
    end = T0 + timedelta(minutes=5)
    if ending == "paid":
        end = T0 + timedelta(minutes=1)
        assert (await book.match_credit(credit("c1", bank=end), end)).kind == "matched"
    elif ending == "expired":
        assert (await book.expire("10001", end)).status == "expired"
    else:
        await book.cancel("10001", end)
    inside = end + timedelta(seconds=Q - 1)
    with pytest.raises(AmountReserved):
        await book.create(order("10002", at=inside))
    after = end + timedelta(seconds=Q + 1)
    assert (await book.create(order("10003", at=after))).status == "waiting"


async def test_waiting_order_holds_its_amount_even_past_its_quarantine(book):
    """If the scanner lags, a waiting order keeps its amount until it is really expired."""
    await book.create(order("10001"))
    with pytest.raises(AmountReserved):
        await book.create(order("10002", at=T0 + timedelta(hours=2)))


async def test_free_tail_picks_first_free_amount_atomically(book):
    base = 5_000_000
    first = await book.create_with_free_tail(order("10001", amount=base), base)
    second = await book.create_with_free_tail(order("10002", amount=base), base)
    assert (first.order.amount_tiyin, second.order.amount_tiyin) == (5_000_100, 5_000_200)
    assert (await book.get("10002")).order.amount_tiyin == 5_000_200
    with pytest.raises(AmountReserved):
        await book.create(order("10003", amount=5_000_100))


async def test_free_tail_concurrent_creates_get_distinct_amounts(book):
    base = 7_000_000
    records = await asyncio.gather(
        *(
            book.create_with_free_tail(
                order(str(10001 + i), amount=base), base, range(100, 1100, 100)
            )
            for i in range(10)
        )
    )
    assert sorted(r.order.amount_tiyin for r in records) == [
        base + t for t in range(100, 1100, 100)
    ]
    with pytest.raises(NoFreeAmount):
        await book.create_with_free_tail(order("10099", amount=base), base, range(100, 1100, 100))
    assert await book.get("10099") is None


async def test_credit_pays_the_waiting_order(book):
    await book.create(order("10001"))
    at = T0 + timedelta(minutes=2)
    outcome = await book.match_credit(credit("c1", bank=at), at)
    assert outcome.kind == "matched"
    assert outcome.record.status == "paid"
    assert outcome.record.credit_id == "c1"
    assert outcome.record.late is False
    assert outcome.record.paid_at == at
    assert await book.get("10001") == outcome.record


async def test_non_uzs_credit_is_unmatched_with_reason(book):
    await book.create(order("10001"))
    outcome = await book.match_credit(credit("c1", currency="USD"), T0)
    assert outcome.kind == "unmatched"
    assert "USD" in outcome.reason
    assert (await book.get("10001")).status == "waiting"


async def test_wrong_amount_or_card_is_unmatched(book):
    await book.create(order("10001"))
    assert (await book.match_credit(credit("c1", amount=5_003_800), T0)).kind == "unmatched"
    assert (await book.match_credit(credit("c2", card_last4="1111"), T0)).kind == "unmatched"
    other = "other@gmail.com"
    wrong_mailbox = credit("c3", mailbox_id=mailbox_id_for(other), gmail=other)
    assert (await book.match_credit(wrong_mailbox, T0)).kind == "unmatched"
    assert (await book.get("10001")).status == "waiting"


@pytest.mark.parametrize(
    ("bank_offset_s", "kind"),
    [
        (-60 - 30, "matched"),  # 07:29:00 minute overlaps [07:29:30, ...]
        (-60 - 31, "unmatched"),  # 07:28 minute ends before the window opens
        (300 - 30, "matched"),  # 07:35 minute starts before expires_at 07:35:30
        (300 + 30, "unmatched"),  # 07:36 minute is after expires_at
    ],
)
async def test_bank_time_must_lie_in_the_window(book, bank_offset_s, kind):
    await book.create(order("10001"))
    bank = T0 + timedelta(seconds=bank_offset_s)
    outcome = await book.match_credit(credit("c1", bank=bank), T0 + timedelta(minutes=1))
    assert outcome.kind == kind
    if kind == "unmatched":
        assert outcome.reason == "bank time outside the order window"


async def test_late_credit_pays_expired_order_while_quarantined(book):
    await book.create(order("10001"))
    deadline = T0 + timedelta(minutes=5)
    await book.expire("10001", deadline)
    mail_at = deadline + timedelta(minutes=3)
    outcome = await book.match_credit(credit("c1", bank=T0 + timedelta(minutes=4)), mail_at)
    assert outcome.kind == "matched"
    assert outcome.record.late is True
    assert outcome.record.status == "paid"
    # the amount stays quarantined from the payment on
    with pytest.raises(AmountReserved):
        await book.create(order("10002", at=mail_at + timedelta(seconds=Q - 1)))


async def test_credit_after_deadline_is_late_even_before_the_scanner_expired_it(book):
    await book.create(order("10001"))
    mail_at = T0 + timedelta(minutes=5, seconds=40)
    outcome = await book.match_credit(credit("c1", bank=T0 + timedelta(minutes=4)), mail_at)
    assert outcome.kind == "matched"
    assert outcome.record.status == "paid" and outcome.record.late is True


async def test_late_credit_after_quarantine_is_unmatched(book):
    await book.create(order("10001"))
    deadline = T0 + timedelta(minutes=5)
    await book.expire("10001", deadline)
    outcome = await book.match_credit(
        credit("c1", bank=T0 + timedelta(minutes=4)), deadline + timedelta(seconds=Q + 1)
    )
    assert outcome.kind == "unmatched"
    assert (await book.get("10001")).status == "expired"


async def test_cancelled_order_is_not_paid(book):
    await book.create(order("10001"))
    await book.cancel("10001", T0 + timedelta(minutes=1))
    outcome = await book.match_credit(credit("c1"), T0 + timedelta(minutes=2))
    assert outcome.kind == "unmatched"
    assert outcome.reason == "the order holding this amount is cancelled"


async def test_an_order_is_paid_by_one_credit_only(book):
    await book.create(order("10001"))
    assert (await book.match_credit(credit("c1"), T0)).kind == "matched"
    second = await book.match_credit(credit("c2"), T0)
    assert second.kind == "unmatched"
    assert (await book.get("10001")).credit_id == "c1"


@pytest.mark.parametrize("first_kind", ["matched", "unmatched"])
async def test_duplicate_credit_returns_the_first_outcome(book, first_kind):
    await book.create(order("10001"))
    c = credit("c1", currency="UZS" if first_kind == "matched" else "RUB")
    first = await book.match_credit(c, T0)
    assert first.kind == first_kind
    # a redelivery, even much later and even after a state change, replays the first decision
    await book.expire("10001", T0 + timedelta(minutes=5))
    again = await book.match_credit(c, T0 + timedelta(minutes=6))
    assert again.kind == "duplicate"
    assert again.original == first_kind
    assert again.record == first.record
    assert again.reason == first.reason


async def test_ambiguity_needs_two_holders_so_only_a_restored_history_reaches_it(book):
    """The reservation makes two candidates impossible through `create`; state rebuilt from the
    streams is written as it was, and then a credit fitting two orders pays neither."""
    await book.create(order("10001"))
    with pytest.raises(AmountReserved):
        await book.create(order("10002", merchant_id="8"))
    await book.restore(OrderRecord(order=order("10002", merchant_id="8"), status="waiting"))
    outcome = await book.match_credit(credit("c1", bank=T0 + timedelta(minutes=1)), T0)
    assert outcome.kind == "ambiguous"
    assert set(outcome.candidate_order_ids) == {"10001", "10002"}
    assert outcome.record is None
    assert {(await book.get(i)).status for i in ("10001", "10002")} == {"waiting"}
    again = await book.match_credit(credit("c1", bank=T0 + timedelta(minutes=1)), T0)
    assert (again.kind, again.original) == ("duplicate", "ambiguous")
    assert set(again.candidate_order_ids) == {"10001", "10002"}


async def test_restore_of_an_ended_order_keeps_its_quarantine(book):
    paid_at = T0 + timedelta(minutes=1)
    rec = OrderRecord(
        order=order("10001"), status="paid", paid_at=paid_at, credit_id="c1", ended_at=paid_at
    )
    await book.restore(rec)
    assert await book.get("10001") == rec
    order_key = book.keys.order(MBX, "6412", "10001")
    assert 0 < await book.redis.ttl(order_key) <= book.retention_s
    with pytest.raises(AmountReserved):
        await book.create(order("10002", at=paid_at + timedelta(seconds=Q - 1)))
    await book.create(order("10003", at=paid_at + timedelta(seconds=Q + 1)))


async def test_cancel_rules(book):
    await book.create(order("10001"))
    cancelled = await book.cancel("10001", T0 + timedelta(seconds=10))
    assert cancelled.status == "cancelled"
    assert cancelled.ended_at == T0 + timedelta(seconds=10)
    assert await book.cancel("10001", T0 + timedelta(seconds=20)) == cancelled
    with pytest.raises(KeyError):
        await book.cancel("77777", T0)
    await book.create(order("10002", amount=1_000_000))
    await book.match_credit(credit("c1", amount=1_000_000), T0)
    with pytest.raises(TransitionNotAllowed) as err:
        await book.cancel("10002", T0)
    assert err.value.status == "paid"


async def test_expire_rules(book):
    await book.create(order("10001"))
    deadline = T0 + timedelta(minutes=5)
    assert await book.expire("10001", deadline - timedelta(seconds=1)) is None
    assert (await book.get("10001")).status == "waiting"
    expired = await book.expire("10001", deadline)
    assert expired.status == "expired" and expired.ended_at == deadline
    assert await book.expire("10001", deadline + timedelta(seconds=5)) == expired
    with pytest.raises(TransitionNotAllowed):
        await book.cancel("10001", deadline)
    await book.create(order("10002", amount=1_000_000))
    await book.cancel("10002", T0)
    assert await book.expire("10002", deadline) is None
    assert await book.expire("nope", deadline) is None


async def test_void_removes_order_and_reservation(book):
    await book.create(order("10001"))
    await book.void("10001")
    assert await book.get("10001") is None
    assert await book.due(T0 + timedelta(hours=1)) == []
    assert (await book.create(order("10002"))).status == "waiting"


async def test_due_and_claim_due_lease(book):
    await book.create(order("10001"))
    await book.create(order("10002", amount=1_000_000, at=T0 + timedelta(minutes=1)))
    assert await book.due(T0 + timedelta(minutes=5)) == ["10001"]
    later = T0 + timedelta(minutes=6, seconds=30)
    assert await book.claim_due(later, lease_s=30) == ["10001", "10002"]
    assert await book.claim_due(later, lease_s=30) == []  # leased to the first claimant
    await book.clear_deadline("10001")
    assert await book.claim_due(later + timedelta(seconds=31)) == ["10002"]


async def test_ended_orders_get_a_long_ttl(book, redis_client, redis_prefix):
    await book.create(order("10001"))
    key = Keys(redis_prefix).order(MBX, "6412", "10001")
    assert await redis_client.ttl(key) == -1
    await book.expire("10001", T0 + timedelta(minutes=5))
    assert 0 < await redis_client.ttl(key) <= book.retention_s


async def test_released_reservations_are_pruned(book, redis_client, redis_prefix):
    keys = Keys(redis_prefix)
    for i in range(5):
        await book.create(order(str(10001 + i), amount=1_000_000 + i))
        await book.cancel(str(10001 + i), T0)
    holds = keys.card(MBX, "6412", "holds")
    assert await redis_client.hlen(holds) == 5
    await book.create(order("10010", amount=9_000_000, at=T0 + timedelta(seconds=Q + 1)))
    assert await redis_client.hgetall(holds) == {"9000000": "10010"}
    assert await redis_client.zcard(keys.card(MBX, "6412", "releases")) == 0


@pytest.mark.parametrize("iteration", range(3))
async def test_racing_match_expire_cancel_give_one_outcome(book, iteration):
    """Concurrent credit, deadline and cancel on the same order: exactly one of them ends it."""
    deadline = T0 + timedelta(minutes=5)
    for n in range(30):
        oid = str(20000 + n)
        amount = 1_000_000 + n * 100
        await book.create(order(oid, amount=amount))
        results = await asyncio.gather(
            book.match_credit(credit(f"c{iteration}-{n}", amount=amount), deadline),
            book.expire(oid, deadline),
            book.cancel(oid, deadline),
            return_exceptions=True,
        )
        matched, expired, cancelled = results
        final = await book.get(oid)
        paid = matched.kind == "matched"
        did_expire = expired is not None
        did_cancel = not isinstance(cancelled, Exception)
        assert [did_cancel, did_expire, paid and not matched.record.late].count(True) == 1
        if paid and matched.record.late:
            assert did_expire
        if did_cancel:
            assert final.status == "cancelled" and not paid and not did_expire
        elif paid:
            assert final.status == "paid" and final.credit_id == f"c{iteration}-{n}"
            assert final.late == did_expire
            assert isinstance(cancelled, TransitionNotAllowed)
        else:
            assert final.status == "expired"
            assert isinstance(cancelled, TransitionNotAllowed)


async def test_racing_credits_for_one_order_pay_it_once(book):
    await book.create(order("10001"))
    outcomes = await asyncio.gather(*(book.match_credit(credit(f"c{i}"), T0) for i in range(20)))
    assert [o.kind for o in outcomes].count("matched") == 1
    assert [o.kind for o in outcomes].count("unmatched") == 19


async def test_outbox_lists_creates_and_cancels_until_published(book):
    """Survives (with the gateway's sweep): a process killed between an order transition in
    Redis and the PubAck of its event. The entry is written with the transition and stays
    until `published`; refusals and voids leave nothing to publish behind."""
    later = T0 + timedelta(hours=1)
    await book.create(order("10001"))
    await book.create(order("10002", amount=1_000_000))
    with pytest.raises(AmountReserved):
        await book.create(order("10003"))  # refused: nothing to publish
    assert await book.unpublished(later) == [("created", "10001"), ("created", "10002")]
    assert await book.unpublished(T0 - timedelta(seconds=1)) == []  # younger than the cutoff
    await book.published("created", "10001")
    await book.cancel("10001", T0 + timedelta(seconds=5))
    await book.void("10002")
    assert await book.unpublished(later) == [("cancelled", "10001")]
    await book.published("cancelled", "10001")
    await book.create(order("10004", amount=2_000_000))
    await book.match_credit(credit("c1", amount=2_000_000), T0)
    await book.published("created", "10004")
    with pytest.raises(TransitionNotAllowed):
        await book.cancel("10004", T0)  # refused: nothing cancelled, nothing to publish
    with pytest.raises(KeyError):
        await book.cancel("77777", T0)
    assert await book.unpublished(later) == []


async def test_deadlines_spread_over_shards_and_older_unsharded_ones_still_expire(
    redis_client, redis_prefix
):
    """Cards' deadlines land in several shards (no key takes every create); a deadline in
    the unsharded set that data from before the shards has is claimed and cleared too."""
    keys = Keys(redis_prefix)
    book = OrderBook(redis_client, keys)
    cards = [f"{n:04d}" for n in range(12)]
    for i, last4 in enumerate(cards):
        await book.create(order(str(10001 + i), card_last4=last4))
    shards = {keys.deadline_shard_of(MBX, last4) for last4 in cards}
    assert len(shards) > 3
    assert not await redis_client.exists(keys.deadlines)
    legacy = order("10100", card_last4="0100")
    await book.create(legacy)
    member = f"{MBX}:0100:10100"
    await redis_client.zrem(keys.deadline_shard_of(MBX, "0100"), member)
    await redis_client.zadd(keys.deadlines, {member: legacy.expires_at.timestamp()})
    later = legacy.expires_at + timedelta(seconds=1)
    due = await book.claim_due(later, lease_s=30, limit=500)
    assert sorted(due) == sorted([str(10001 + i) for i in range(12)] + ["10100"])
    assert await book.claim_due(later, lease_s=30, limit=500) == []  # leased
    for order_id in due:
        await book.clear_deadline(order_id)
    assert await book.due(later + timedelta(minutes=5)) == []


async def test_id_blocks_start_at_10001_and_every_block_lies_above_the_ones_before(
    redis_client, redis_prefix
):
    """Two processes (books) leasing blocks of 3: each hands out increasing ids, no id twice,
    and a block leased later is above every earlier one."""
    first = OrderBook(redis_client, Keys(redis_prefix), id_block=3)
    second = OrderBook(redis_client, Keys(redis_prefix), id_block=3)
    a = [await first.next_order_id() for _ in range(2)]
    b = [await second.next_order_id() for _ in range(4)]
    c = [await first.next_order_id() for _ in range(2)]
    assert a == ["10001", "10002"] and b == ["10004", "10005", "10006", "10007"]
    assert c == ["10003", "10010"]
    everything = a + b + c
    assert len(set(everything)) == len(everything)
    single = OrderBook(redis_client, Keys(redis_prefix))
    assert await single.next_order_id() == "10013"  # above every block leased


async def test_id_blocks_are_handed_out_once_under_concurrency(redis_client, redis_prefix):
    book = OrderBook(redis_client, Keys(redis_prefix), id_block=7)
    ids = await asyncio.gather(*(book.next_order_id() for _ in range(50)))
    assert sorted(int(i) for i in ids) == list(range(10001, 10051))


async def test_the_create_trace_is_kept_beside_the_order_as_long_as_its_locator(book):
    o = order("10001")
    await book.create(o)
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    await book.remember_trace(o, parent)
    other = order("10002", card_last4="9999")
    assert await book.create_traces([o, other]) == [parent, None]
    trace_key = book.keys.order_trace(o.mailbox_id, o.card_last4, o.order_id)
    locator_ttl = await book.redis.ttl(book.keys.order_locator(o.order_id))
    assert abs(await book.redis.ttl(trace_key) - locator_ttl) <= 1
    assert book.keys.card_tag(o.mailbox_id, o.card_last4) in trace_key  # the order's slot
