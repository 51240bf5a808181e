"""The JetStream consumer: decode an order event and hand it to the service layer."""

from __future__ import annotations

import structlog
from faststream import AckPolicy
from faststream.nats import ConsumerConfig, DeliverPolicy, JStream, NatsBroker, NatsMessage, PullSub
from pydantic import ValidationError

from autopay_contracts import Namespace, OrderCancelled, OrderExpired, OrderPaid, parse_event
from autopay_notifier.service import Notifier

log = structlog.get_logger("autopay_notifier")

WEBHOOK_EVENTS = (OrderPaid, OrderExpired, OrderCancelled)


def register(
    broker: NatsBroker, notifier: Notifier, ns: Namespace, *, durable: str, fetch_batch: int
) -> None:
    """Durable pull consumer on every order event of every merchant; `order.created` and the
    events an order did not opt into are acked and skipped. An exception (Redis down) nacks
    the message with a delay, so it comes back once the delivery can be recorded."""

    @broker.subscriber(
        ns.order("*", "*"),
        stream=JStream(ns.stream_name("ORDERS"), declare=False),
        durable=durable,
        pull_sub=PullSub(batch_size=fetch_batch, timeout=1.0),
        config=ConsumerConfig(ack_wait=30, deliver_policy=DeliverPolicy.ALL),
        ack_policy=AckPolicy.MANUAL,
    )
    async def on_order_event() -> None:
        # The message comes from the context rather than a `msg: NatsMessage` parameter:
        # FastStream resolves a context parameter with a sync call that it runs in a worker
        # thread, a thread hop for every order event.
        msg: NatsMessage = broker.context.get_local("message")
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
