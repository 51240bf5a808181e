"""The JetStream consumers: decode an event and hand it to `Alerts`.

One durable pull consumer per stream the bot reads (credit decisions: only `unmatched` and
`ambiguous`), driven batch by batch by `autopay_runtime.pulling`: the bot reads every order and
webhook event of every merchant, most of them for merchants with no linked chat, and
FastStream's per-message machinery and one ack write a message cost more than skipping them.
A failure (gateway or Redis away) nacks the event with a delay, so it comes back; an event
that does not decode is logged and terminated (the bot may publish no dead letter)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy
from pydantic import ValidationError

from autopay_contracts import Namespace, parse_event
from autopay_merchant_bot.alerts import Alerts
from autopay_runtime.pulling import PullConsumer

log = structlog.get_logger("autopay_merchant_bot")

ACK_WAIT_S = 60
BATCH = 16
RETRY_DELAY_S = 5.0


def subscriptions(ns: Namespace) -> list[tuple[str, str, str]]:
    """(stream, subject, durable suffix) of every consumer."""
    return [
        ("ORDERS", ns.order("*", "*"), "orders"),
        ("CREDITS", ns.subject("credit", "*", "unmatched"), "credits-unmatched"),
        ("CREDITS", ns.subject("credit", "*", "ambiguous"), "credits-ambiguous"),
        ("WEBHOOKS", ns.webhook("*", "*"), "webhooks"),
        ("MAILBOXES", ns.subject("mailbox", "*", "*"), "mailboxes"),
    ]


def consumers(
    jetstream: Callable[[], JetStreamContext],
    alerts: Alerts,
    ns: Namespace,
    *,
    durable: str,
    lookback_s: float,
) -> list[PullConsumer]:
    """The bot's consumers (started with the app). A new durable starts `lookback_s` back; an
    existing one goes on from where it is."""
    config = ConsumerConfig(
        ack_wait=ACK_WAIT_S,
        deliver_policy=DeliverPolicy.BY_START_TIME,
        opt_start_time=datetime.now(UTC) - timedelta(seconds=lookback_s),
    )
    return [
        PullConsumer(
            jetstream,
            alert_on(alerts, subject),
            stream=ns.stream_name(stream),
            subject=subject,
            durable=f"{durable}-{suffix}",
            config=config,
            batch=BATCH,
            ordered=False,  # each event's alert is its own, as FastStream handled them
        )
        for stream, subject, suffix in subscriptions(ns)
    ]


def alert_on(alerts: Alerts, subject: str) -> Callable[[Msg], Awaitable[None]]:
    async def handle(msg: Msg) -> None:
        try:
            event = parse_event(msg.data)
        except (ValueError, ValidationError) as exc:
            log.error("undecodable event dropped", subject=subject, error=str(exc)[:300])
            await msg.term()
            return
        try:
            await alerts.handle(event, datetime.now(UTC))
        except Exception:
            log.exception("alert not handled; redelivered later", event_type=event.event_type)
            await msg.nak(delay=RETRY_DELAY_S)
            return
        await msg.ack()

    return handle
