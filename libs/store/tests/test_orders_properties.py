"""Property test: random create/cancel/expire/credit sequences keep the order book's
invariants: one holder per held amount, one outcome per order and per credit."""

import contextlib
import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from autopay_contracts import Order, mailbox_id_for
from autopay_contracts.events import Credit
from autopay_store.keys import Keys
from autopay_store.orders import AmountReserved, OrderBook, TransitionNotAllowed

T0 = datetime(2026, 5, 16, 7, 0, tzinfo=UTC)
GMAIL = "karta@gmail.com"
MBX = mailbox_id_for(GMAIL)
CARDS = ("6412", "8600")
AMOUNTS = (1_000_000, 1_000_100)
Q = 600
LEAD = 60
LIFETIME = timedelta(minutes=5)

step = st.one_of(
    st.tuples(st.just("create"), st.sampled_from(CARDS), st.sampled_from(AMOUNTS)),
    st.tuples(st.just("cancel"), st.integers(0, 20)),
    st.tuples(st.just("expire"), st.integers(0, 20)),
    st.tuples(
        st.just("credit"),
        st.sampled_from(CARDS),
        st.sampled_from(AMOUNTS),
        st.integers(-12, 3),  # bank minute relative to now
        st.sampled_from(["UZS", "UZS", "UZS", "USD"]),
        st.integers(0, 3),  # credit id: small range so redeliveries happen
    ),
    st.tuples(
        st.just("pay"),
        st.integers(0, 20),  # which order the customer meant to pay
        st.integers(-2, 6),  # bank minute relative to that order's creation
        st.sampled_from(["UZS", "UZS", "UZS", "USD"]),
        st.integers(0, 5),
    ),
    st.tuples(st.just("wait"), st.integers(1, 400)),
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(step, min_size=5, max_size=40))
async def test_random_histories_keep_the_invariants(redis_client, redis_prefix, steps):
    book = OrderBook(
        redis_client, Keys(f"{redis_prefix}-{uuid.uuid4().hex[:6]}"), Q, window_lead_s=LEAD
    )
    now = T0
    created: list[Order] = []
    credits: dict[str, Credit] = {}
    first_outcome: dict[str, str] = {}
    for action, *args in steps:
        now += timedelta(seconds=7)
        if action == "wait":
            now += timedelta(seconds=args[0])
        elif action == "create":
            card, amount = args
            oid = await book.next_order_id()
            o = Order(
                order_id=oid,
                merchant_id=oid[-1],
                mailbox_id=MBX,
                gmail=GMAIL,
                card_last4=card,
                amount_tiyin=amount,
                created_at=now,
                expires_at=now + LIFETIME,
            )
            try:
                await book.create(o)
            except AmountReserved:
                assert await _someone_holds(book, created, card, amount, now)
            else:
                # invariant 3: nobody else held it at creation
                assert not await _someone_holds(book, created, card, amount, now)
                created.append(o)
        elif action in ("cancel", "expire") and created:
            o = created[args[0] % len(created)]
            if action == "cancel":
                with contextlib.suppress(TransitionNotAllowed):
                    await book.cancel(o.order_id, now)
            else:  # the scanner reaches the deadline
                now = max(now, o.expires_at)
                await book.expire(o.order_id, now)
        elif action in ("credit", "pay") and (action == "credit" or created):
            if action == "credit":
                card, amount, minute, currency, n = args
                bank = (now + timedelta(minutes=minute)).replace(second=0, microsecond=0)
            else:
                index, minute, currency, n = args
                meant = created[index % len(created)]
                card, amount = meant.card_last4, meant.amount_tiyin
                bank = (meant.created_at + timedelta(minutes=minute)).replace(second=0)
                bank = min(bank, now.replace(second=0))
            cid = f"{action}{n}"
            c = credits.setdefault(
                cid,
                Credit(
                    credit_id=cid,
                    mailbox_id=MBX,
                    gmail=GMAIL,
                    card_last4=card,
                    amount_tiyin=amount,
                    currency=currency,
                    occurred_at=bank,
                    received_at=now,
                    format="uzcard-email",
                ),
            )
            outcome = await book.match_credit(c, now)
            if cid in first_outcome:
                assert outcome.kind == "duplicate" and outcome.original == first_outcome[cid]
            else:
                first_outcome[cid] = outcome.kind
                event(
                    f"credit {outcome.kind}"
                    + (" late" if outcome.record and outcome.record.late else "")
                )
        await _check(book, created, credits)


async def _someone_holds(book: OrderBook, orders: list[Order], card: str, amount: int, now) -> bool:
    for o in orders:
        if (o.card_last4, o.amount_tiyin) != (card, amount):
            continue
        rec = await book.get(o.order_id)
        if rec.status == "waiting" or rec.ended_at + timedelta(seconds=Q) > now:
            return True
    return False


async def _check(book: OrderBook, orders: list[Order], credits: dict[str, Credit]) -> None:
    paid_by: dict[str, str] = {}
    for o in orders:
        rec = await book.get(o.order_id)
        assert rec is not None and rec.order == o
        if rec.status != "paid":
            assert rec.credit_id is None
            continue
        # invariant 1: one credit per order and one order per credit
        assert rec.credit_id not in paid_by, (rec.credit_id, paid_by)
        paid_by[rec.credit_id] = o.order_id
        # invariant 2: UZS, same card, same amount, bank minute overlapping the window
        c = credits[rec.credit_id]
        assert c.currency == "UZS"
        assert (c.mailbox_id, c.card_last4, c.amount_tiyin) == (
            o.mailbox_id,
            o.card_last4,
            o.amount_tiyin,
        )
        assert c.occurred_at <= o.expires_at
        assert c.occurred_at + timedelta(seconds=60) > o.created_at - timedelta(seconds=LEAD)
        if rec.late:
            assert rec.paid_at >= o.expires_at
