"""Use cases of the transactions ledger: list and read records, match a credit to an order by
hand, dismiss a credit that belongs to no order.

A manual match is one atomic transition in the order book (`OrderBook.match_manually`): the
credit must not have paid an order, and the order must be waiting or expired, of the same
merchant, world and card. The amounts may differ (the response and the events say by how
much). Then the ledger record is written at once, and `order.paid` and `credit.matched` are
published (manual, with who made it: the key id, or `merchant-bot:<key id>` for the merchant
bot's key); the outbox entry written before the transition makes the sweep publish them if this
request dies first, so the webhook fires whatever happens.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import structlog

from autopay_contracts import CreditDismissed, CreditMatched, OrderPaid
from autopay_contracts.money import som
from autopay_gateway.clock import tashkent
from autopay_gateway.messages import ApiError
from autopay_runtime.publishing import EventPublisher, PublishFailed
from autopay_store.accounts import Merchant
from autopay_store.ledger import (
    AlreadyMatched,
    Ledger,
    Transaction,
    UnknownTransaction,
    ledger_scope,
    transaction_of,
)
from autopay_store.orders import CreditConsumed, OrderBook, OrderRecord, TransitionNotAllowed

log = structlog.get_logger("autopay_gateway")


def transaction_view(tx: Transaction) -> dict[str, Any]:
    return {
        "id": tx.id,
        "status": tx.status,
        "reason": tx.reason,
        "amount": som(tx.amount_tiyin),
        "card_last4": tx.card_last4,
        "gmail": tx.gmail,
        "occurred_at": tashkent(tx.occurred_at),
        "received_at": tashkent(tx.received_at),
        "order_id": tx.order_id,
        "candidates": list(tx.candidates),
        "late": tx.late,
        "manual": tx.manual,
        "matched_at": tashkent(tx.matched_at),
        "dismissed_at": tashkent(tx.dismissed_at),
    }


def matched_events(
    record: OrderRecord, tx: Transaction, matched_by: str
) -> tuple[OrderPaid, CreditMatched]:
    """The events of a manual match, as the request and the outbox sweep both publish them."""
    credit = tx.as_credit()
    assert record.paid_at is not None
    paid = OrderPaid(
        order=record.order,
        credit_id=credit.credit_id,
        paid_at=record.paid_at,
        late=record.late,
        manual=True,
        matched_by=matched_by,
    )
    decided = CreditMatched(
        credit=credit,
        order_id=record.order.order_id,
        merchant_id=record.order.merchant_id,
        late=record.late,
        manual=True,
        matched_by=matched_by,
        matched_at=record.paid_at,
        amount_difference_tiyin=credit.amount_tiyin - record.order.amount_tiyin,
    )
    return paid, decided


class Transactions:
    def __init__(
        self, ledger: Ledger, orders: OrderBook, publisher: EventPublisher, attempts: int
    ) -> None:
        self.ledger = ledger
        self.orders = orders
        self.publisher = publisher
        self.attempts = attempts

    async def list(
        self,
        merchant: Merchant,
        *,
        status: str | None,
        since: datetime | None,
        limit: int,
        cursor: str | None,
    ) -> dict[str, Any]:
        scope = ledger_scope(merchant.merchant_id, merchant.test_mode)
        try:
            page = await self.ledger.page(
                scope, status=status, since=since, limit=limit, cursor=cursor
            )
        except ValueError:
            raise ApiError(400, "invalid_cursor") from None
        return {
            "transactions": [transaction_view(tx) for tx in page.transactions],
            "next_cursor": page.next_cursor,
        }

    async def _own(self, merchant: Merchant, tx_id: str) -> Transaction:
        scope = ledger_scope(merchant.merchant_id, merchant.test_mode)
        tx = await self.ledger.get(scope, tx_id)
        if tx is None:
            raise ApiError(404, "transaction_not_found")
        return tx

    async def get(self, merchant: Merchant, tx_id: str) -> dict[str, Any]:
        return {"transaction": transaction_view(await self._own(merchant, tx_id))}

    async def match(
        self, merchant: Merchant, actor: str, tx_id: str, order_id: str, now: datetime
    ) -> dict[str, Any]:
        """`actor`: who matches, as audited (`Caller.actor`: the key id, or
        `merchant-bot:<key id>` through the merchant bot)."""
        tx = await self._own(merchant, tx_id)
        if not tx.matchable:
            raise ApiError(409, "transaction_not_matchable", status=_state(tx))
        record = await self.orders.get(order_id)
        if (
            record is None
            or record.order.merchant_id != merchant.merchant_id
            or record.order.test_mode != merchant.test_mode
        ):
            raise ApiError(404, "order_not_found")
        credit = tx.as_credit()
        order = record.order
        if (order.mailbox_id, order.card_last4) != (credit.mailbox_id, credit.card_last4):
            raise ApiError(400, "order_other_card")
        try:
            paid = await self.orders.match_manually(order_id, credit, now, actor)
        except CreditConsumed as exc:
            raise ApiError(409, "credit_consumed", order_id=exc.order_id or "?") from None
        except TransitionNotAllowed as exc:
            raise ApiError(409, "cannot_match", status=exc.status) from None
        except KeyError:
            raise ApiError(404, "order_not_found") from None
        order_paid, credit_matched = matched_events(paid, tx, actor)
        matched = transaction_of(credit_matched)
        with structlog.contextvars.bound_contextvars(order_id=order_id, transaction_id=tx_id):
            await self.ledger.record(matched)
            try:
                for event in (order_paid, credit_matched):
                    await self.publisher.publish_acked(event, self.attempts)
            except PublishFailed as exc:
                # Paid in the book; the outbox sweep publishes both events (same ids) later.
                log.error("manual match events not acknowledged yet", error=str(exc))
            else:
                await self.orders.published("matched", order_id)
            log.info(
                "credit matched by hand",
                merchant_id=merchant.merchant_id,
                difference_tiyin=credit_matched.amount_difference_tiyin,
            )
        difference = credit_matched.amount_difference_tiyin
        return {
            "success": True,
            "transaction": transaction_view(matched),
            "order_id": order_id,
            "status": "paid",
            "amount_differs": difference != 0,
            "difference": som(difference),
        }

    async def dismiss(
        self, merchant: Merchant, actor: str, tx_id: str, now: datetime
    ) -> dict[str, Any]:
        scope = ledger_scope(merchant.merchant_id, merchant.test_mode)
        try:
            tx = await self.ledger.dismiss(scope, tx_id, now, actor)
        except UnknownTransaction:
            raise ApiError(404, "transaction_not_found") from None
        except AlreadyMatched:
            raise ApiError(409, "transaction_not_matchable", status="matched") from None
        event = CreditDismissed(
            transaction_id=tx_id,
            merchant_id=merchant.merchant_id,
            dismissed_at=tx.dismissed_at or now,
            dismissed_by=tx.dismissed_by or actor,
            test_mode=merchant.test_mode,
        )
        try:
            await self.publisher.publish_acked(event, self.attempts)
        except PublishFailed as exc:
            log.error("dismissal not acknowledged", error=str(exc))
            raise ApiError(503, "unavailable") from None
        return {"success": True, "transaction": transaction_view(tx)}


def _state(tx: Transaction) -> str:
    if tx.dismissed_at is not None:
        return "dismissed"
    return tx.status
