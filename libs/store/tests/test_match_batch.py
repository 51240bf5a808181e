"""`OrderBook.match_credits`: a batch decided in one round trip, each credit on its own."""

from datetime import timedelta

from redis.exceptions import ResponseError

from autopay_store.keys import Keys
from autopay_store.orders import MatchOutcome, OrderBook
from autopay_testing.builders import MBX, T0, credit, order


async def test_batch_decides_each_credit_like_match_credit(redis_client, redis_prefix):
    book = OrderBook(redis_client, Keys(redis_prefix))
    await book.create(order("10001", 5_003_700, card_last4="6412"))
    await book.create(order("10002", 5_003_800, card_last4="6412"))
    await book.create(order("10003", 5_003_700, card_last4="7001"))
    now = T0 + timedelta(minutes=1)
    batch = [
        credit("c1", 5_003_700, card_last4="6412"),
        credit("c2", 5_003_700, card_last4="7001"),
        credit("c3", 9_999_900, card_last4="6412"),
        credit(
            "c4", 5_003_700, card_last4="6412"
        ),  # the same amount again: its order is paid already
    ]
    decided = await book.match_credits(batch, now)
    assert all(isinstance(outcome, MatchOutcome) for outcome in decided)
    assert [o.kind for o in decided] == ["matched", "matched", "unmatched", "unmatched"]
    assert decided[0].record.order.order_id == "10001" and decided[0].record.credit_id == "c1"
    assert decided[1].record.order.order_id == "10003" and decided[1].record.status == "paid"
    assert decided[3].reason == "the order holding this amount is paid"
    assert (await book.get("10002")).status == "waiting"

    again = await book.match_credits(batch[:2], now + timedelta(seconds=5))
    assert [o.kind for o in again] == ["duplicate", "duplicate"]
    assert [o.original for o in again] == ["matched", "matched"]
    assert again[0].record.paid_at == decided[0].record.paid_at
    assert await book.match_credits([], now) == []


async def test_one_credits_redis_error_leaves_the_others_decided(redis_client, redis_prefix):
    keys = Keys(redis_prefix)
    book = OrderBook(redis_client, keys)
    await book.create(order("10001", 5_003_700, card_last4="6412"))
    await book.create(order("10002", 5_003_700, card_last4="7001"))
    await redis_client.set(keys.card(MBX, "7001", "credits"), "not a hash")
    now = T0 + timedelta(minutes=1)
    decided = await book.match_credits(
        [credit("c1", 5_003_700, card_last4="6412"), credit("c2", 5_003_700, card_last4="7001")],
        now,
    )
    assert isinstance(decided[0], MatchOutcome) and decided[0].kind == "matched"
    assert isinstance(decided[1], ResponseError)
    assert (await book.get("10001")).status == "paid"
    assert (await book.get("10002")).status == "waiting"
