"""The notifier's AsyncAPI declarations that the running service does not make itself.

The order events are consumed with nats-py directly (`handlers.consumer`), so the app's broker
has no subscriber for them. `make asyncapi` calls `document` on a broker it builds only to
write the document (never started), so the subscription is in the notifier's AsyncAPI
document with its durable, and no patched subscriber runs in the service.
"""

from __future__ import annotations

from faststream import AckPolicy
from faststream.nats import JStream, NatsBroker, PullSub

from autopay_contracts.permissions import pull_inbox_prefix
from autopay_notifier.handlers import consumer_config
from autopay_notifier.settings import NotifierSettings


def document(broker: NatsBroker, settings: NotifierSettings) -> None:
    """Declare the order-event subscription on `broker` (a documentation-only broker)."""
    ns = settings.ns

    @broker.subscriber(
        ns.order("*", "*"),
        stream=JStream(ns.stream_name("ORDERS"), declare=False),
        durable=settings.durable,
        pull_sub=PullSub(batch_size=settings.fetch_batch, timeout=1.0),
        inbox_prefix=pull_inbox_prefix("notifier"),
        config=consumer_config(settings.consumer_lookback_s),
        ack_policy=AckPolicy.MANUAL,
    )
    async def on_order_event() -> None:
        raise RuntimeError("documentation only: order events are consumed by handlers.consumer")
