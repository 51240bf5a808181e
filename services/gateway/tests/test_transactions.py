"""The transactions ledger and manual matching through the gateway (real NATS and Redis).

Money at stake: a customer sent 50 000 instead of 50 037, paid after expiry, or two orders
waited for one amount. Attacks: matching another merchant's order or a credit already spent,
matching twice (two requests racing), matching an order on another card, a test key reaching
the live ledger.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from autopay_contracts import CreditMatched, CreditUnmatched, OrderPaid, parse_event
from autopay_contracts.streams import CREDITS, ORDERS
from autopay_gateway.republish import Republisher
from autopay_runtime.publishing import EventPublisher, PublishFailed
from autopay_store.ledger import LATE_REASON, transaction_of
from autopay_store.orders import OrderRecord
from autopay_testing import builders
from autopay_testing.jetstream import stored

from .conftest import CARD

EN = {"accept-language": "en"}
RU = {"accept-language": "ru"}


async def unmatched_credit(gw, merchant_id: str, credit_id: str, amount_som: int, **kw):
    """A credit the matcher decided `unmatched`, and its ledger record, as the services write
    them (the decision in the order book, the record from the `credit.unmatched` event)."""
    now = datetime.now(UTC)
    credit = builders.credit(credit_id, amount=amount_som * 100, bank=now, **kw)
    outcome = await gw.orders.match_credit(credit, now)
    assert outcome.kind == "unmatched", outcome
    reason = kw.pop("reason", None) or outcome.reason
    event = CreditUnmatched(credit=credit, reason=reason, merchant_id=merchant_id)
    await gw.ledger.record(transaction_of(event))
    return credit


async def order(gw, key: str, amount: int, card: dict = CARD) -> str:
    response = await gw.post("/api/create-payment", key, {"amount": amount, **card})
    assert response.status_code == 200, response.text
    return response.json()["order_id"]


async def test_a_wrong_amount_is_listed_and_matched_by_hand(gw, nats_client):
    shop = await gw.merchant()
    mid, key = shop.merchant.merchant_id, shop.api_key
    order_id = await order(gw, key, 50_037)
    await unmatched_credit(gw, mid, "cr-wrong", 50_000)

    listed = (await gw.get("/api/transactions", key)).json()
    assert [t["id"] for t in listed["transactions"]] == ["cr-wrong"]
    record = listed["transactions"][0]
    assert (record["status"], record["amount"], record["card_last4"]) == (
        "unmatched",
        50_000,
        "6412",
    )
    assert record["order_id"] is None and listed["next_cursor"] is None

    matched = await gw.post("/api/transactions/cr-wrong/match", key, {"order_id": order_id})
    assert matched.status_code == 200, matched.text
    answer = matched.json()
    assert answer["status"] == "paid" and answer["amount_differs"] is True
    assert answer["difference"] == -37
    assert answer["transaction"]["status"] == "matched" and answer["transaction"]["manual"]

    check = (await gw.post("/api/check-payment", key, {"order_id": order_id})).json()
    assert check["status"] == "paid"
    record = await gw.orders.get(order_id)
    assert record.manual and record.credit_id == "cr-wrong"

    paid = [parse_event(e) for e in await stored(nats_client, ORDERS.name(gw.ns), ".paid")]
    assert len(paid) == 1 and isinstance(paid[0], OrderPaid)
    assert paid[0].manual and paid[0].matched_by  # which key did it
    decided = [parse_event(e) for e in await stored(nats_client, CREDITS.name(gw.ns), ".matched")]
    assert isinstance(decided[0], CreditMatched) and decided[0].amount_difference_tiyin == -3700
    assert decided[0].manual and decided[0].matched_at is not None
    # The credit is spent: a redelivery to the matcher is a duplicate of this payment.
    again = await gw.orders.match_credit(
        builders.credit("cr-wrong", amount=5_000_000), datetime.now(UTC)
    )
    assert again.kind == "duplicate" and again.record.order.order_id == order_id

    twice = await gw.post("/api/transactions/cr-wrong/match", key, {"order_id": order_id}, **EN)
    assert twice.status_code == 409
    assert twice.json() == {
        "detail": "This transaction cannot be matched or dismissed: it is matched."
    }


async def test_two_racing_matches_pay_once(gw):
    shop = await gw.merchant()
    mid, key = shop.merchant.merchant_id, shop.api_key
    order_id = await order(gw, key, 50_037)
    await unmatched_credit(gw, mid, "cr-a", 50_000)
    await unmatched_credit(gw, mid, "cr-b", 50_001)
    replies = await asyncio.gather(
        gw.post("/api/transactions/cr-a/match", key, {"order_id": order_id}),
        gw.post("/api/transactions/cr-b/match", key, {"order_id": order_id}),
    )
    assert sorted(r.status_code for r in replies) == [200, 409]
    loser = next(r for r in replies if r.status_code == 409)
    assert "paid" in loser.json()["detail"]


async def test_refusals(gw, card):
    shop = await gw.merchant()
    other = await gw.merchant("Other", card=False)
    await gw.accounts.add_card(shop.merchant.merchant_id, "8675", "karta@gmail.com")
    mid, key = shop.merchant.merchant_id, shop.api_key
    await unmatched_credit(gw, mid, "cr-1", 50_000)
    other_card = await order(gw, key, 50_111, {"card_last4": "8675", "gmail": "karta@gmail.com"})

    not_found = "Transaction not found. Check the id."
    other_card_detail = "The order is for another card or gmail than this transaction."
    path = "/api/transactions/cr-1/match"
    cases = [
        ("/api/transactions/nope/match", key, {"order_id": other_card}, 404, not_found),
        (path, key, {"order_id": "99999"}, 404, "Payment not found. Check the order_id."),
        (path, key, {}, 400, None),
        (path, key, {"order_id": other_card}, 400, other_card_detail),
        (path, other.api_key, {"order_id": other_card}, 404, not_found),
        (path, None, {"order_id": other_card}, 401, None),
    ]
    for path, who, body, status, detail in cases:
        response = await gw.post(path, who, body, **EN)
        assert response.status_code == status, (path, body, response.text)
        if detail:
            assert response.json() == {"detail": detail}
    assert (await gw.get("/api/transactions/cr-1", other.api_key)).status_code == 404
    queries = [
        ("?status=paid", 400),
        ("?limit=0", 400),
        ("?limit=500", 400),
        ("?cursor=%%%", 400),
        ("?since=yesterday", 400),
        ("?status=unmatched", 200),
    ]
    for query, status in queries:
        response = await gw.get(f"/api/transactions{query}", key)
        assert response.status_code == status, (query, response.text)
    russian = await gw.get("/api/transactions/nope", key, **RU)
    assert russian.json() == {"detail": "Транзакция не найдена. Проверьте id."}
    uzbek = await gw.get("/api/transactions/nope", key)
    assert uzbek.json() == {"detail": "Tranzaksiya topilmadi. id ni tekshiring."}


async def test_dismissed_money_is_handled_and_cannot_be_matched(gw):
    shop = await gw.merchant()
    mid, key = shop.merchant.merchant_id, shop.api_key
    order_id = await order(gw, key, 50_037)
    await unmatched_credit(gw, mid, "cr-gift", 10_000)
    dismissed = await gw.post("/api/transactions/cr-gift/dismiss", key)
    assert dismissed.status_code == 200 and dismissed.json()["transaction"]["dismissed_at"]
    refused = await gw.post("/api/transactions/cr-gift/match", key, {"order_id": order_id}, **EN)
    assert refused.status_code == 409 and "dismissed" in refused.json()["detail"]


async def test_a_late_credit_pays_its_expired_order(gw):
    shop = await gw.merchant()
    mid, key = shop.merchant.merchant_id, shop.api_key
    order_id = await order(gw, key, 50_037)
    await gw.orders.expire(order_id, datetime.now(UTC) + timedelta(minutes=10))
    await unmatched_credit(gw, mid, "cr-late", 50_036, reason=LATE_REASON)
    listed = (await gw.get("/api/transactions?status=late", key)).json()["transactions"]
    assert [t["id"] for t in listed] == ["cr-late"]
    matched = await gw.post("/api/transactions/cr-late/match", key, {"order_id": order_id})
    assert matched.status_code == 200, matched.text
    record = await gw.orders.get(order_id)
    assert (record.status, record.late, record.manual) == ("paid", True, True)


async def test_an_ambiguous_credit_matched_to_one_leaves_the_other_waiting(gw):
    """Two orders holding one amount (as a rebuild can restore them) make the credit ambiguous;
    the merchant picks one, the other keeps waiting."""
    shop = await gw.merchant()
    mid, key = shop.merchant.merchant_id, shop.api_key
    now = datetime.now(UTC)
    for oid in ("20001", "20002"):
        o = builders.order(oid, amount=5_003_700, at=now, merchant_id=mid)
        await gw.orders.restore(OrderRecord(order=o, status="waiting"))
    credit = builders.credit("cr-amb", amount=5_003_700, bank=now)
    outcome = await gw.orders.match_credit(credit, now)
    assert outcome.kind == "ambiguous"
    from autopay_contracts import CreditAmbiguous

    event = CreditAmbiguous(
        credit=credit, candidate_order_ids=outcome.candidate_order_ids, merchant_id=mid
    )
    await gw.ledger.record(transaction_of(event))
    shown = (await gw.get("/api/transactions/cr-amb", key)).json()["transaction"]
    assert shown["status"] == "ambiguous" and sorted(shown["candidates"]) == ["20001", "20002"]
    matched = await gw.post("/api/transactions/cr-amb/match", key, {"order_id": "20002"})
    assert matched.status_code == 200, matched.text
    assert matched.json()["amount_differs"] is False
    assert (await gw.orders.get("20002")).status == "paid"
    assert (await gw.orders.get("20001")).status == "waiting"


async def test_a_test_key_sees_only_the_sandbox_ledger(gw):
    shop = await gw.merchant()
    mid = shop.merchant.merchant_id
    test_key = await gw.accounts.rotate_api_key(mid, test=True)
    await unmatched_credit(gw, mid, "cr-live", 50_000)
    assert (await gw.get("/api/transactions", test_key)).json()["transactions"] == []
    assert (await gw.get("/api/transactions/cr-live", test_key)).status_code == 404
    assert (await gw.post("/api/transactions/cr-live/dismiss", test_key)).status_code == 404


async def test_an_unacknowledged_manual_match_is_published_by_the_sweep(gw, nats_client):
    """Fault: JetStream refuses the manual match's events. The order is paid in the book (200),
    the outbox keeps it, and the sweep publishes both events once JetStream answers."""
    shop = await gw.merchant()
    mid, key = shop.merchant.merchant_id, shop.api_key
    order_id = await order(gw, key, 50_037)
    await unmatched_credit(gw, mid, "cr-x", 50_000)
    publisher: EventPublisher = gw.app.state.gateway.transactions.publisher
    real = publisher.publish_acked

    async def refuse(event, attempts):
        raise PublishFailed(f"{event.event_type}: refused")

    publisher.publish_acked = refuse  # type: ignore[method-assign]
    try:
        matched = await gw.post("/api/transactions/cr-x/match", key, {"order_id": order_id})
    finally:
        publisher.publish_acked = real  # type: ignore[method-assign]
    assert matched.status_code == 200
    assert await stored(nats_client, ORDERS.name(gw.ns), ".paid") == []
    sweep = Republisher(
        gw.orders,
        publisher,
        grace_s=0,
        interval_s=1,
        attempts=3,
        ledger=gw.ledger,
        clock=lambda: datetime.now(UTC) + timedelta(seconds=1),
    )
    assert await sweep.run_once() == 2
    paid = await stored(nats_client, ORDERS.name(gw.ns), ".paid")
    assert [p["order"]["order_id"] for p in paid] == [order_id] and paid[0]["manual"]
    assert len(await stored(nats_client, CREDITS.name(gw.ns), ".matched")) == 1
    assert await sweep.run_once() == 0


@pytest.mark.parametrize("count", [5])
async def test_pages_through_the_ledger(gw, count):
    shop = await gw.merchant()
    mid, key = shop.merchant.merchant_id, shop.api_key
    for i in range(count):
        await unmatched_credit(gw, mid, f"cr-{i}", 10_000 + i)
    seen, cursor = [], None
    while True:
        suffix = f"&cursor={cursor}" if cursor else ""
        page = (await gw.get(f"/api/transactions?limit=2{suffix}", key)).json()
        seen += [t["id"] for t in page["transactions"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(f"cr-{i}" for i in range(count)) and len(seen) == count
