"""The matcher's AsyncAPI declarations that the running service does not make itself.

`CreditConsumer` consumes `credit.received`, and `LedgerConsumer` every credit event, with
nats-py directly, so the app's broker has no subscriber for them. `make asyncapi` calls
`document` on a broker it builds only to write the document (never started), so both
subscriptions are in the matcher's AsyncAPI document with their durables (and the credit's
schema), and no patched subscriber runs in the service.
"""

from __future__ import annotations

from faststream import AckPolicy
from faststream.nats import JStream, NatsBroker, PullSub

from autopay_contracts.permissions import pull_inbox_prefix
from autopay_contracts.streams import CREDITS
from autopay_matcher.bootstrap import consumer_config
from autopay_matcher.ledger import ledger_config
from autopay_matcher.settings import MatcherSettings


def document(broker: NatsBroker, settings: MatcherSettings) -> None:
    """Declare the credit and ledger subscriptions on `broker` (a documentation-only
    broker)."""
    ns = settings.ns
    subscriber = broker.subscriber(
        ns.credit("*", "received"),
        stream=JStream(CREDITS.name(ns), declare=False),
        durable=settings.consumer_name,
        pull_sub=PullSub(batch_size=settings.fetch_batch, timeout=settings.fetch_timeout_seconds),
        inbox_prefix=pull_inbox_prefix("matcher"),
        config=consumer_config(settings),
        ack_policy=AckPolicy.MANUAL,
    )

    @subscriber
    async def on_credit_received() -> None:
        raise RuntimeError("documentation only: credits are consumed by CreditConsumer")

    @broker.subscriber(
        ns.all_of(CREDITS.aggregate),
        stream=JStream(CREDITS.name(ns), declare=False),
        durable=settings.ledger_consumer_name,
        pull_sub=PullSub(batch_size=100, timeout=1.0),
        inbox_prefix=pull_inbox_prefix("matcher"),
        config=ledger_config(),
        ack_policy=AckPolicy.MANUAL,
    )
    async def on_credit_event() -> None:
        raise RuntimeError("documentation only: the ledger is written by LedgerConsumer")
