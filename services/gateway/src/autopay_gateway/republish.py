"""Use case: publish the order events a crash (or a JetStream outage) left unpublished.

Create, cancel and a manual match write the order book first and publish after, with an
outbox entry written before the Redis transition and removed after the PubAck
(`OrderBook.unpublished`). An entry older than `grace_s` (longer than a request's whole
publish budget) belongs to a request that died or gave up: its events are built again from the
order book (and, for a manual match, the credit's ledger record) and published with the same
deterministic `Nats-Msg-Id` (JetStream drops one that had landed), then the entry goes. So
after any crash, once a gateway runs again, the ORDERS stream says what Redis says and
`autopay admin rebuild-orders` rebuilds the same book. Every replica runs it; two of them
publishing the same entry is harmless (same id).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import structlog

from autopay_contracts import Event, OrderCancelled, OrderCreated, OrderPaid
from autopay_gateway.transactions import matched_events
from autopay_runtime.publishing import EventPublisher, PublishFailed
from autopay_store.ledger import Ledger, Transaction, ledger_scope
from autopay_store.orders import OrderBook, OrderRecord, OutboxEvent

log = structlog.get_logger("autopay_gateway")


def pending_events(
    kind: OutboxEvent, record: OrderRecord | None, matched: Transaction | None = None
) -> list[Event]:
    """The events an outbox entry stands for, as the request would have published them; none
    when there is nothing to publish (the order is gone, or a cancel never happened). For a
    manual match, `matched` is the credit's ledger record (its `credit.matched` needs it)."""
    if record is None:
        return []
    if kind == "created":
        return [OrderCreated(order=record.order)]
    if kind == "matched":
        if record.status != "paid" or not record.manual:
            return []
        if matched is None or matched.credit is None:  # the ledger lost it: the payment stands
            assert record.paid_at is not None and record.credit_id is not None
            paid = OrderPaid(
                order=record.order,
                credit_id=record.credit_id,
                paid_at=record.paid_at,
                late=record.late,
                manual=True,
                matched_by=record.matched_by,
            )
            return [paid]
        return list(matched_events(record, matched, record.matched_by or ""))
    if record.status == "cancelled" and record.ended_at is not None:
        return [OrderCancelled(order=record.order, cancelled_at=record.ended_at)]
    return []


class Republisher:
    def __init__(
        self,
        orders: OrderBook,
        publisher: EventPublisher,
        *,
        grace_s: float,
        interval_s: float,
        attempts: int,
        ledger: Ledger | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.orders = orders
        self.ledger = ledger
        self.publisher = publisher
        self.grace_s = grace_s
        self.interval_s = interval_s
        self.attempts = attempts
        self.clock = clock

    async def run_once(self, batch: int = 200) -> int:
        """One pass over at most `batch` entries; returns how many events were published."""
        cutoff = self.clock() - timedelta(seconds=self.grace_s)
        published = 0
        for kind, order_id in await self.orders.unpublished(cutoff, limit=batch):
            record = await self.orders.get(order_id)
            matched = None
            if kind == "matched" and record is not None and record.credit_id:
                scope = ledger_scope(record.order.merchant_id, record.order.test_mode)
                matched = await self.ledger.get(scope, record.credit_id) if self.ledger else None
            with structlog.contextvars.bound_contextvars(order_id=order_id):
                for event in pending_events(kind, record, matched):
                    try:
                        await self.publisher.publish_acked(event, self.attempts)
                    except PublishFailed as exc:
                        log.warning("order event still not acknowledged", error=str(exc))
                        return published  # JetStream is unavailable: the next pass tries again
                    published += 1
                    log.info("order event published after the request", event_type=event.event_type)
                await self.orders.published(kind, order_id)
        return published

    async def run(self) -> None:
        """`run_once` now (a restart after a crash) and then every `interval_s`."""
        batch = 200
        while True:
            published = 0
            try:
                published = await self.run_once(batch)
            except Exception:
                log.exception("republishing unpublished order events failed")
            if published < batch:  # else a backlog (after an outage): the next batch at once
                await asyncio.sleep(self.interval_s)
