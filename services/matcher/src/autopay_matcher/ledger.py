"""The ledger consumer: every credit decision, rejection and dismissal of the CREDITS stream
becomes (or updates) a record of the merchant's transactions ledger (`autopay_store.ledger`).

A durable pull consumer of its own, apart from the credit consumer, so a slow or failing ledger
write never delays a payment. Writes are idempotent (a record is keyed by its credit or
rejection id and never goes back from `matched`), so a redelivery is harmless; a failure
(Redis down) nacks the message and it comes back.
"""

from __future__ import annotations

from faststream import AckPolicy
from faststream.nats import ConsumerConfig, DeliverPolicy, JStream, NatsBroker, NatsMessage, PullSub
from pydantic import ValidationError

from autopay_contracts import Namespace, parse_event
from autopay_contracts.permissions import pull_inbox_prefix
from autopay_contracts.streams import CREDITS
from autopay_runtime.logging import get_logger
from autopay_store.ledger import Ledger, replay_ledger
from autopay_store.mailboxes import MailboxOwners


def register(
    broker: NatsBroker, ledger: Ledger, owners: MailboxOwners, ns: Namespace, durable: str
) -> None:
    log = get_logger(task="ledger")

    @broker.subscriber(
        ns.all_of(CREDITS.aggregate),
        stream=JStream(CREDITS.name(ns), declare=False),
        durable=durable,
        pull_sub=PullSub(batch_size=100, timeout=1.0),
        inbox_prefix=pull_inbox_prefix("matcher"),
        config=ConsumerConfig(ack_wait=30, deliver_policy=DeliverPolicy.ALL),
        ack_policy=AckPolicy.MANUAL,
    )
    async def on_credit_event() -> None:
        msg: NatsMessage = broker.context.get_local("message")
        try:
            event = parse_event(msg.body)
        except (ValueError, ValidationError) as exc:
            # The credit consumer dead-letters what it cannot read; the ledger just skips it.
            log.warning("unreadable credit event skipped by the ledger", error=str(exc)[:200])
            await msg.ack()
            return
        try:
            await replay_ledger(event, ledger, owners)
        except Exception:
            log.exception("ledger write failed; retried", event_type=event.event_type)
            await msg.nack(delay=2)
            return
        await msg.ack()
