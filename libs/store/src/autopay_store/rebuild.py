"""Rebuild the order book in Redis from the JetStream streams: losing Redis loses no order.

The ORDERS stream holds every order transition (each event carries the whole `Order`), the
CREDITS stream every matching decision, rejection and dismissal. Folding them per order id gives
each order's final `OrderRecord`; folding the decisions per credit gives the matcher's outcome,
so a credit redelivered after the rebuild is still a `duplicate`; replaying the CREDITS events
in order writes the merchants' transactions ledgers again (`replay_ledger`). Merchants, keys
and cards are not in the streams: they live only in Redis and are not rebuilt here.

Streams written before addresses were normalized the Gmail way carry mailbox ids of the old
rule (`legacy_mailbox_id_for`); every order and credit read is put back on the mailbox id its
address has now (`mailbox_id_for`), so the rebuilt book is where the services look for it.

`fold_orders` and `fold_decisions` are pure; `rebuild_orders` reads the streams with ephemeral
ordered consumers and writes through `OrderBook.restore`, never lowering what Redis already has:
an order further along in Redis than in the streams (its event still being published) is kept,
a decided credit keeps its first outcome, the order id sequence only moves up.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy

from autopay_contracts import (
    CreditAmbiguous,
    CreditMatched,
    CreditUnmatched,
    Event,
    MailboxRegistered,
    MailboxRemoved,
    Namespace,
    OrderCancelled,
    OrderCreated,
    OrderExpired,
    OrderPaid,
    WebhookDelivered,
    WebhookExhausted,
    mailbox_id_for,
    normalize_gmail,
    parse_event,
)
from autopay_contracts.events import Credit, Order
from autopay_contracts.streams import CREDITS, MAILBOX_CONFIG, ORDERS, WEBHOOKS
from autopay_contracts.webhooks import delivery_id_for, encode_body, wants_webhook, webhook_payload
from autopay_store import scripts
from autopay_store.deliveries import DeliveryStore, NewDelivery
from autopay_store.journal import AccountJournal, RestoreReport
from autopay_store.ledger import Ledger, replay_ledger
from autopay_store.mailboxes import MailboxOwners
from autopay_store.orders import ORDER_ID_BASE, OrderBook, OrderRecord

OrderOrCredit = TypeVar("OrderOrCredit", Order, Credit)

_RANK = {"waiting": 0, "expired": 1, "cancelled": 1, "paid": 2}

_DECISION_TYPES = {e.event_type for e in (CreditMatched, CreditUnmatched, CreditAmbiguous)}

# --- pure folding -------------------------------------------------------------------------


def on_current_mailbox(item: OrderOrCredit) -> OrderOrCredit:
    """The order or credit with its address normalized and the mailbox id derived from it."""
    gmail = normalize_gmail(item.gmail)
    mailbox_id = mailbox_id_for(gmail)
    if (item.gmail, item.mailbox_id) == (gmail, mailbox_id):
        return item
    return item.model_copy(update={"gmail": gmail, "mailbox_id": mailbox_id})


def _apply(current: OrderRecord | None, event: Event) -> OrderRecord | None:
    if isinstance(event, OrderCreated):
        return current or OrderRecord(order=event.order, status="waiting")
    if not isinstance(event, OrderPaid | OrderExpired | OrderCancelled):
        return current
    base = current or OrderRecord(order=event.order, status="waiting")
    if isinstance(event, OrderPaid):
        if base.status in ("waiting", "expired"):
            return replace(
                base,
                status="paid",
                paid_at=event.paid_at,
                credit_id=event.credit_id,
                late=event.late or base.status == "expired",
                ended_at=event.paid_at,
                manual=event.manual,
                matched_by=event.matched_by,
            )
        return base
    if base.status != "waiting":
        return base
    if isinstance(event, OrderExpired):
        return replace(base, status="expired", ended_at=event.expired_at)
    return replace(base, status="cancelled", ended_at=event.cancelled_at)


def fold_orders(events: Iterable[Event]) -> dict[str, OrderRecord]:
    """Each order's final record from its events in stream order.

    The order book's rules decide conflicts: an order ends once (`waiting` → paid / expired /
    cancelled), except that a late credit pays an `expired` order (`late=True`); a paid order
    keeps its first credit; a cancelled one stays cancelled. Replayed events change nothing.
    Events of other types are ignored. Orders land on their address's current mailbox id."""
    records: dict[str, OrderRecord] = {}
    for event in events:
        order = getattr(event, "order", None)
        if order is None:
            continue
        folded = _apply(records.get(order.order_id), event)
        if folded is not None:
            records[order.order_id] = folded
    return {
        order_id: replace(record, order=on_current_mailbox(record.order))
        for order_id, record in records.items()
    }


@dataclass(frozen=True)
class CreditDecision:
    """The matcher's first outcome for a credit, as the order book stores it."""

    credit: Credit
    outcome: dict
    """The JSON the match script stores: `{"kind": "matched", "order_id": ...}`,
    `{"kind": "unmatched", "reason": ...}` or `{"kind": "ambiguous", "candidates": [...]}`."""
    decided_at: datetime


def decision_of(event: Event) -> dict | None:
    if isinstance(event, CreditMatched):
        if event.manual:
            return {"kind": "matched", "order_id": event.order_id, "manual": True}
        return {"kind": "matched", "order_id": event.order_id}
    if isinstance(event, CreditUnmatched):
        return {"kind": "unmatched", "reason": event.reason}
    if isinstance(event, CreditAmbiguous):
        return {"kind": "ambiguous", "candidates": list(event.candidate_order_ids)}
    return None


def fold_decisions(
    events: Iterable[tuple[Event, datetime]],
) -> dict[tuple[str, str, str], CreditDecision]:
    """The decision per `(mailbox_id, card_last4, credit_id)` from `(event, stored at)` pairs
    in stream order: the first one, except that a `matched` decision (a merchant's manual
    match of a credit first decided unmatched or ambiguous) replaces it, since the credit is
    spent then. Later decisions of the same kind (replays) are ignored."""
    decisions: dict[tuple[str, str, str], CreditDecision] = {}
    for event, at in events:
        outcome = decision_of(event)
        if outcome is None:
            continue
        credit = on_current_mailbox(event.credit)  # type: ignore[attr-defined]
        key = (credit.mailbox_id, credit.card_last4, credit.credit_id)
        first = decisions.get(key)
        if first is None or (outcome["kind"] == "matched" and first.outcome["kind"] != "matched"):
            decisions[key] = CreditDecision(credit=credit, outcome=outcome, decided_at=at)
    return decisions


def sequence_floor(order_ids: Iterable[str]) -> int:
    """The lowest sequence value after which `next_order_id` is above every id seen."""
    numbers = [int(i) for i in order_ids if i.isdigit()]
    return max((n - ORDER_ID_BASE for n in numbers), default=0)


# --- reading the streams ------------------------------------------------------------------


async def read_stream(
    js: JetStreamContext, stream: str, subject: str, idle_timeout_s: float = 10.0
) -> AsyncIterator[tuple[Event, datetime]]:
    """Every event stored in `stream` up to its last message when called, in order, with the
    time JetStream stored it (an ephemeral ordered consumer, nothing acknowledged)."""
    info = await js.stream_info(stream)
    if info.state.messages == 0:
        return
    last = info.state.last_seq
    sub = await js.subscribe(
        subject, stream=stream, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
    )
    try:
        while True:
            msg = await sub.next_msg(timeout=idle_timeout_s)
            meta = msg.metadata
            yield parse_event(msg.data), meta.timestamp
            if meta.sequence.stream >= last or meta.num_pending == 0:
                return
    finally:
        await sub.unsubscribe()


async def latest_mailbox_config(
    js: JetStreamContext, ns: Namespace
) -> dict[str, MailboxRegistered | MailboxRemoved]:
    """The latest MAILBOX_CONFIG event per mailbox id (the stream keeps only that)."""
    latest: dict[str, MailboxRegistered | MailboxRemoved] = {}
    stream = MAILBOX_CONFIG.name(ns)
    async for event, _ in read_stream(js, stream, ns.all_of(MAILBOX_CONFIG.aggregate)):
        if isinstance(event, MailboxRegistered | MailboxRemoved):
            latest[event.mailbox_id] = event
    return latest


# --- writing ------------------------------------------------------------------------------


@dataclass
class RebuildReport:
    orders: dict[str, int] = field(default_factory=dict)
    """Restored orders by status."""
    kept: int = 0
    """Orders left as they were: Redis had them further along than the streams."""
    decisions: int = 0
    """Credit decisions written (a credit already decided in Redis keeps its outcome)."""
    ledger: int = 0
    """Transactions ledger events replayed (decisions, rejections, dismissals)."""
    aged_out: int = 0
    """Orders that ended longer than the book's retention ago (Redis would have dropped them)."""
    order_sequence: int = 0
    records: dict[str, OrderRecord] = field(default_factory=dict, repr=False)
    """Every order the streams describe (for the usage count of `rebuild`)."""
    events: list[Event] = field(default_factory=list, repr=False)
    """Every ORDERS event, in stream order (for the pending webhooks of `rebuild`)."""


async def write_decision(book: OrderBook, decision: CreditDecision) -> bool:
    """Store a decision where the match script keeps it, unless the credit is already decided."""
    return await book.restore_decision(decision.credit, decision.outcome, decision.decided_at)


async def _restore(book: OrderBook, record: OrderRecord, report: RebuildReport) -> None:
    existing = await book.get(record.order.order_id)
    if existing is not None and _RANK[existing.status] > _RANK[record.status]:
        report.kept += 1
        return
    await book.restore(record)
    report.orders[record.status] = report.orders.get(record.status, 0) + 1


async def rebuild_orders(
    js: JetStreamContext,
    ns: Namespace,
    book: OrderBook,
    now: datetime | None = None,
    concurrency: int = 64,
) -> RebuildReport:
    """Read ORDERS and CREDITS from the beginning and write the order book they describe.
    Orders that ended more than `book.retention_s` before `now` are not restored (the streams
    keep longer than Redis does); their ids still count for the sequence.
    Idempotent: running it again (or on a Redis that kept part of its state) changes nothing
    that is already right."""
    oldest_end = (now or datetime.now(UTC)) - timedelta(seconds=book.retention_s)
    order_events = [
        event async for event, _ in read_stream(js, ORDERS.name(ns), ns.all_of(ORDERS.aggregate))
    ]
    all_credit_events = [
        (event, at)
        async for event, at in read_stream(js, CREDITS.name(ns), ns.all_of(CREDITS.aggregate))
    ]
    credit_events = [(e, at) for e, at in all_credit_events if e.event_type in _DECISION_TYPES]
    records = fold_orders(order_events)
    decisions = fold_decisions(credit_events)
    report = RebuildReport(records=records, events=order_events)
    gate = asyncio.Semaphore(concurrency)

    async def restore(record: OrderRecord) -> None:
        if record.status != "waiting" and (record.ended_at or record.order.expires_at) < oldest_end:
            report.aged_out += 1
            return
        async with gate:
            await _restore(book, record, report)

    async def decide(decision: CreditDecision) -> None:
        async with gate:
            written = await write_decision(book, decision)
        report.decisions += written

    await asyncio.gather(*(restore(r) for r in records.values()))
    await asyncio.gather(*(decide(d) for d in decisions.values()))
    ledger = Ledger(book.redis, book.keys)
    owners = MailboxOwners(book.redis, book.keys)
    for event, _ in all_credit_events:  # in stream order: a dismissal after its record
        report.ledger += await replay_ledger(event, ledger, owners)
    raise_sequence = scripts.register(book.redis, "order_sequence_raise")
    report.order_sequence = int(
        await raise_sequence(keys=[book.keys.order_sequence], args=[sequence_floor(records)])
    )
    return report


# --- everything ---------------------------------------------------------------------------


@dataclass
class FullRebuildReport:
    accounts: RestoreReport
    orders: RebuildReport
    usage: dict[str, int] = field(default_factory=dict)
    """payments_used counted again from ORDERS, for the merchants whose record was restored."""
    deliveries: int = 0
    """Webhooks scheduled again: due by ORDERS, neither delivered nor given up by WEBHOOKS."""


DELIVERY_LOOKBACK = timedelta(days=29)
"""How far back a webhook may be scheduled again: inside what WEBHOOKS keeps (30 days), so a
webhook delivered long ago is never taken for one still pending."""


async def restore_deliveries(
    js: JetStreamContext,
    ns: Namespace,
    store: DeliveryStore,
    order_events: Iterable[Event],
    now: datetime,
) -> int:
    """Schedule, due now, every webhook ORDERS asks for (within `DELIVERY_LOOKBACK`) that
    WEBHOOKS shows neither delivered nor exhausted. A delivery Redis still has is left as it
    is (`enqueue` makes nothing new), and the `webhook-id` is the one the notifier gives, so a
    receiver that already got it can tell. Returns how many were scheduled."""
    finished: set[str] = set()
    stream = WEBHOOKS.name(ns)
    async for event, _ in read_stream(js, stream, ns.all_of(WEBHOOKS.aggregate)):
        if isinstance(event, WebhookDelivered | WebhookExhausted):
            finished.add(event.delivery_id)
    oldest = now - DELIVERY_LOOKBACK
    scheduled = 0
    for event in order_events:
        if not isinstance(event, OrderPaid | OrderExpired | OrderCancelled):
            continue
        if not wants_webhook(event) or delivery_id_for(event) in finished:
            continue
        at = event.paid_at if isinstance(event, OrderPaid) else _ended_at(event)
        if at < oldest:
            continue
        order = event.order
        delivery = NewDelivery(
            delivery_id=delivery_id_for(event),
            merchant_id=order.merchant_id,
            order_id=order.order_id,
            order_event=event.event_name,
            url=order.webhook_url or "",
            body=encode_body(webhook_payload(event)).decode(),
            created_at=now.timestamp(),
        )
        if await store.enqueue(delivery, lease_until=None, due_at=now.timestamp()) is not None:
            scheduled += 1
    return scheduled


def _ended_at(event: OrderExpired | OrderCancelled) -> datetime:
    return event.expired_at if isinstance(event, OrderExpired) else event.cancelled_at


def payments_since(records: Iterable[OrderRecord], merchant_id: str, since: float) -> int:
    """How many payments the merchant created since `since` (epoch s): a created payment
    counts as used, whatever became of it."""
    return sum(
        1
        for r in records
        if r.order.merchant_id == merchant_id and r.order.created_at.timestamp() >= since
    )


async def rebuild(
    js: JetStreamContext,
    ns: Namespace,
    book: OrderBook,
    journal: AccountJournal,
    deliveries: DeliveryStore,
    now: datetime | None = None,
) -> FullRebuildReport:
    """Restore everything Redis needs to serve from JetStream: the accounts from the ACCOUNTS
    bucket (keys Redis lacks), then the orders, decisions and ledger from the streams, the
    usage of every restored merchant counted from ORDERS, and the webhooks still pending.
    Idempotent; it never moves state backwards (what Redis has is kept, an order is never set
    back, a delivery Redis has is not touched)."""
    now = now or datetime.now(UTC)
    accounts = await journal.restore()
    orders = await rebuild_orders(js, ns, book, now)
    usage: dict[str, int] = {}
    for merchant_id in accounts.merchants:
        key = book.keys.merchant(merchant_id)
        since = float(await book.redis.hget(key, "usage_since") or 0)
        usage[merchant_id] = payments_since(orders.records.values(), merchant_id, since)
        await book.redis.hset(key, "payments_used", usage[merchant_id])
    pending = await restore_deliveries(js, ns, deliveries, orders.events, now)
    return FullRebuildReport(accounts, orders, usage, pending)
