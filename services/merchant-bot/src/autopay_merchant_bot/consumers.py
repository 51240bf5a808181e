"""The JetStream consumers: decode an event and hand it to `Alerts`.

One durable pull consumer per stream the bot reads (credit decisions: only `unmatched` and
`ambiguous`). A failure (gateway or Redis away) nacks the event with a delay, so it comes back;
an event that does not decode is logged and terminated (the bot may publish no dead letter)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import structlog
from faststream import AckPolicy
from faststream.nats import ConsumerConfig, DeliverPolicy, JStream, NatsBroker, NatsMessage, PullSub
from pydantic import ValidationError

from autopay_contracts import Namespace, parse_event
from autopay_contracts.permissions import pull_inbox_prefix
from autopay_merchant_bot.alerts import Alerts

log = structlog.get_logger("autopay_merchant_bot")


def subscriptions(ns: Namespace) -> list[tuple[str, str, str]]:
    """(stream, subject, durable suffix) of every consumer."""
    return [
        ("ORDERS", ns.order("*", "*"), "orders"),
        ("CREDITS", ns.subject("credit", "*", "unmatched"), "credits-unmatched"),
        ("CREDITS", ns.subject("credit", "*", "ambiguous"), "credits-ambiguous"),
        ("WEBHOOKS", ns.webhook("*", "*"), "webhooks"),
        ("MAILBOXES", ns.subject("mailbox", "*", "*"), "mailboxes"),
    ]


def register(
    broker: NatsBroker, alerts: Alerts, ns: Namespace, *, durable: str, lookback_s: float
) -> None:
    start = datetime.now(UTC) - timedelta(seconds=lookback_s)
    for stream, subject, suffix in subscriptions(ns):
        _subscribe(broker, alerts, ns.stream_name(stream), subject, f"{durable}-{suffix}", start)


def _subscribe(
    broker: NatsBroker,
    alerts: Alerts,
    stream: str,
    subject: str,
    durable: str,
    start: datetime,
) -> None:
    @broker.subscriber(
        subject,
        stream=JStream(stream, declare=False),
        durable=durable,
        pull_sub=PullSub(batch_size=16, timeout=1.0),
        inbox_prefix=pull_inbox_prefix("merchant-bot"),
        config=ConsumerConfig(
            ack_wait=60, deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=start
        ),
        ack_policy=AckPolicy.MANUAL,
    )
    async def on_event() -> None:
        msg: NatsMessage = broker.context.get_local("message")
        try:
            event = parse_event(msg.body)
        except (ValueError, ValidationError) as exc:
            log.error("undecodable event dropped", subject=subject, error=str(exc)[:300])
            await msg.reject()
            return
        try:
            await alerts.handle(event, datetime.now(UTC))
        except Exception:
            log.exception("alert not handled; redelivered later", event_type=event.event_type)
            await msg.nack(delay=5)
            return
        await msg.ack()
