"""The JetStream consumer: decode an order event and hand it to the service layer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy
from pydantic import ValidationError

from autopay_contracts import Namespace, OrderCancelled, OrderExpired, OrderPaid, parse_event
from autopay_notifier.service import Notifier
from autopay_runtime.pulling import PullConsumer

log = structlog.get_logger("autopay_notifier")

ACK_WAIT_S = 30
RETRY_DELAY_S = 2.0

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


def consumer_config(lookback_s: float) -> ConsumerConfig:
    """The durable's settings (also in the AsyncAPI document). Only a consumer that does not
    exist yet starts where they say, `lookback_s` ago (`consumer_start`); an existing durable
    keeps its position."""
    return ConsumerConfig(
        ack_wait=ACK_WAIT_S,
        deliver_policy=DeliverPolicy.BY_START_TIME,
        opt_start_time=consumer_start(datetime.now(UTC), lookback_s),
    )


def consumer(
    jetstream: Callable[[], JetStreamContext],
    notifier: Notifier,
    ns: Namespace,
    *,
    durable: str,
    fetch_batch: int,
    lookback_s: float,
) -> PullConsumer:
    """Durable pull consumer on every order event of every merchant, driven batch by batch by
    `autopay_runtime.pulling` (FastStream's per-message machinery and one ack write a message
    cost more than most events need: `order.created` and the events an order did not opt
    into are only acked)."""
    return PullConsumer(
        jetstream,
        on_order_event(notifier),
        stream=ns.stream_name("ORDERS"),
        subject=ns.order("*", "*"),
        durable=durable,
        config=consumer_config(lookback_s),
        batch=fetch_batch,
        ordered=False,  # each event's webhook is its own: a batch is scheduled at once
    )


def on_order_event(notifier: Notifier) -> Callable[[Msg], Awaitable[None]]:
    """An order event's handling: a webhook scheduled (`Notifier.accept`), then the ack. An
    exception (Redis down) nacks the message with a delay, so it comes back once the delivery
    can be recorded; an event that does not decode is terminated."""

    async def handle(msg: Msg) -> None:
        if msg.subject.rsplit(".", 1)[-1] not in WEBHOOK_KINDS:
            await msg.ack()  # order.created: one per order, never a webhook; not decoded
            return
        try:
            event = parse_event(msg.data)
        except (ValueError, ValidationError) as exc:
            log.error("undecodable order event dropped", error=str(exc)[:300])
            await msg.term()
            return
        if not isinstance(event, WEBHOOK_EVENTS):
            await msg.ack()
            return
        try:
            await notifier.accept(event)
        except Exception:
            log.exception("could not schedule webhook", order_id=event.order.order_id)
            await msg.nak(delay=RETRY_DELAY_S)
            return
        await msg.ack()

    return handle
