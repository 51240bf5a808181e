"""The JetStream consumer: decode an order event and hand it to the service layer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import structlog
from faststream import AckPolicy
from faststream.nats import ConsumerConfig, DeliverPolicy, JStream, NatsBroker, NatsMessage, PullSub
from pydantic import ValidationError

from autopay_contracts import Namespace, OrderCancelled, OrderExpired, OrderPaid, parse_event
from autopay_contracts.permissions import pull_inbox_prefix
from autopay_notifier.service import Notifier

log = structlog.get_logger("autopay_notifier")

WEBHOOK_EVENTS = (OrderPaid, OrderExpired, OrderCancelled)
WEBHOOK_KINDS = frozenset(cls.event_type.rsplit(".", 1)[-1] for cls in WEBHOOK_EVENTS)
"""The last subject token of the order events that make a webhook (`paid`, ...)."""


def consumer_start(now: datetime, lookback_s: float) -> datetime:
    """Where a new durable consumer starts: `lookback_s` before `now`. The lookback is the
    delivery-record retention minus a margin, so every event a new consumer is given is younger
    than the records that say whether its webhook was already sent (ORDERS keeps 90 days,
    the delivery records 30: from the stream's start, a fresh notifier would re-send the
    webhooks of 60 days of paid orders)."""
    return now - timedelta(seconds=max(0.0, lookback_s))


def register(
    broker: NatsBroker,
    notifier: Notifier,
    ns: Namespace,
    *,
    durable: str,
    fetch_batch: int,
    lookback_s: float,
) -> None:
    """Durable pull consumer on every order event of every merchant; `order.created` and the
    events an order did not opt into are acked and skipped. An exception (Redis down) nacks
    the message with a delay, so it comes back once the delivery can be recorded.

    Only a consumer that does not exist yet is created, starting `lookback_s` ago
    (`consumer_start`); an existing durable keeps its position and its configuration."""

    @broker.subscriber(
        ns.order("*", "*"),
        stream=JStream(ns.stream_name("ORDERS"), declare=False),
        durable=durable,
        pull_sub=PullSub(batch_size=fetch_batch, timeout=1.0),
        inbox_prefix=pull_inbox_prefix("notifier"),
        config=ConsumerConfig(
            ack_wait=30,
            deliver_policy=DeliverPolicy.BY_START_TIME,
            opt_start_time=consumer_start(datetime.now(UTC), lookback_s),
        ),
        ack_policy=AckPolicy.MANUAL,
    )
    async def on_order_event() -> None:
        # The message comes from the context rather than a `msg: NatsMessage` parameter:
        # FastStream resolves a context parameter with a sync call that it runs in a worker
        # thread, a thread hop for every order event.
        msg: NatsMessage = broker.context.get_local("message")
        if msg.raw_message.subject.rsplit(".", 1)[-1] not in WEBHOOK_KINDS:
            await msg.ack()  # order.created: one per order, never a webhook; not decoded
            return
        try:
            event = parse_event(msg.body)
        except (ValueError, ValidationError) as exc:
            log.error("undecodable order event dropped", error=str(exc)[:300])
            await msg.reject()
            return
        if not isinstance(event, WEBHOOK_EVENTS):
            await msg.ack()
            return
        try:
            await notifier.accept(event)
        except Exception:
            log.exception("could not schedule webhook", order_id=event.order.order_id)
            await msg.nack(delay=2)
            return
        await msg.ack()
