"""`OrderBook.match_credits`: a batch decided in one round trip, each credit on its own."""

from datetime import UTC, datetime, timedelta

from redis.exceptions import ResponseError

from autopay_contracts import Order, mailbox_id_for
from autopay_contracts.events import Credit
from autopay_store.keys import Keys
from autopay_store.orders import MatchOutcome, OrderBook

T0 = datetime(2026, 5, 16, 7, 30, 30, tzinfo=UTC)
GMAIL = "karta@gmail.com"
MBX = mailbox_id_for(GMAIL)


def order(order_id: str, card: str, amount: int) -> Order:
    return Order(
        order_id=order_id,
        merchant_id="7",
        mailbox_id=MBX,
        gmail=GMAIL,
        card_last4=card,
        amount_tiyin=amount,
        created_at=T0,
        expires_at=T0 + timedelta(minutes=5),
    )


def credit(credit_id: str, card: str, amount: int) -> Credit:
    return Credit(
        credit_id=credit_id,
        mailbox_id=MBX,
        gmail=GMAIL,
        card_last4=card,
        amount_tiyin=amount,
        occurred_at=T0.replace(second=0),
        received_at=T0,
        format="uzcard-email",
    )


async def test_batch_decides_each_credit_like_match_credit(redis_client, redis_prefix):
    book = OrderBook(redis_client, Keys(redis_prefix))
    await book.create(order("10001", "6412", 5_003_700))
    await book.create(order("10002", "6412", 5_003_800))
    await book.create(order("10003", "7001", 5_003_700))
    now = T0 + timedelta(minutes=1)
    batch = [
        credit("c1", "6412", 5_003_700),
        credit("c2", "7001", 5_003_700),
        credit("c3", "6412", 9_999_900),
        credit("c4", "6412", 5_003_700),  # the same amount again: its order is paid already
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
    await book.create(order("10001", "6412", 5_003_700))
    await book.create(order("10002", "7001", 5_003_700))
    await redis_client.set(keys.card(MBX, "7001", "credits"), "not a hash")
    now = T0 + timedelta(minutes=1)
    decided = await book.match_credits(
        [credit("c1", "6412", 5_003_700), credit("c2", "7001", 5_003_700)], now
    )
    assert isinstance(decided[0], MatchOutcome) and decided[0].kind == "matched"
    assert isinstance(decided[1], ResponseError)
    assert (await book.get("10001")).status == "paid"
    assert (await book.get("10002")).status == "waiting"
