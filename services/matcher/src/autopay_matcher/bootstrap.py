"""Composition root: wires Redis, the NATS broker, the credit consumer and the expiry scanner."""

from __future__ import annotations

import logging

from faststream import AckPolicy
from faststream.asgi import AsgiFastStream
from faststream.nats import ConsumerConfig, JStream, NatsBroker, NatsMessage, PullSub
from pydantic import ValidationError
from redis.exceptions import RedisError

from autopay_contracts import (
    CreditAmbiguous,
    CreditMatched,
    CreditReceived,
    CreditUnmatched,
    OrderExpired,
    OrderPaid,
    parse_event,
)
from autopay_contracts.streams import CREDITS
from autopay_matcher import metrics
from autopay_matcher.service import Clock, ExpiryScanner, Matcher, system_clock
from autopay_matcher.settings import MatcherSettings
from autopay_runtime.connections import dependency_checks, redis_client
from autopay_runtime.health import health_routes
from autopay_runtime.logging import get_logger
from autopay_runtime.publishing import EventPublisher
from autopay_store.keys import Keys
from autopay_store.orders import OrderBook

PUBLISHED_EVENTS = (OrderPaid, OrderExpired, CreditMatched, CreditUnmatched, CreditAmbiguous)


def build_app(settings: MatcherSettings, clock: Clock = system_clock) -> AsgiFastStream:
    ns = settings.ns
    redis = redis_client(settings.redis_url, "matcher")
    broker = NatsBroker(
        settings.nats_url,
        name="matcher",
        graceful_timeout=15.0,
        log_level=logging.DEBUG,  # per-message access lines only when debugging
    )
    book = OrderBook(
        redis,
        Keys(settings.redis_prefix),
        quarantine_s=settings.quarantine_seconds,
        window_lead_s=settings.window_lead_seconds,
        retention_s=settings.order_retention_seconds,
    )
    publisher = EventPublisher(
        broker, ns, PUBLISHED_EVENTS, timeout_s=settings.publish_timeout_seconds
    )
    matcher = Matcher(book, publisher, clock)
    scanner = ExpiryScanner(
        matcher,
        settings.expiry_scan_interval_seconds,
        settings.expiry_lease_seconds,
        settings.expiry_batch,
    )
    log = get_logger()

    @broker.subscriber(
        ns.credit("*", "received"),
        stream=JStream(CREDITS.name(ns), declare=False),
        durable=settings.consumer_name,
        pull_sub=PullSub(batch_size=settings.fetch_batch, timeout=settings.fetch_timeout_seconds),
        config=ConsumerConfig(ack_wait=settings.ack_wait_seconds, max_deliver=settings.max_deliver),
        ack_policy=AckPolicy.MANUAL,
    )
    async def on_credit_received() -> None:
        # From the context, not a `msg: NatsMessage` parameter: FastStream resolves context
        # parameters with a sync call run in a worker thread, one thread hop per credit.
        msg: NatsMessage = broker.context.get_local("message")
        try:
            event = parse_event(msg.body)
            if not isinstance(event, CreditReceived):
                raise ValueError(f"unexpected event {event.event_type}")
        except (ValueError, ValidationError):
            log.error("undecodable credit event, dropped", subject=msg.raw_message.subject)
            await msg.reject()
            return
        try:
            await matcher.handle_credit(event.credit)
        except RedisError:
            metrics.RETRIES.labels(cause="redis").inc()
            log.warning("redis unavailable, credit redelivered", credit_id=event.credit.credit_id)
            await msg.nack(delay=settings.retry_delay_seconds)
            return
        except Exception:
            metrics.RETRIES.labels(cause="error").inc()
            log.exception("credit failed, redelivered", credit_id=event.credit.credit_id)
            await msg.nack(delay=settings.retry_delay_seconds)
            return
        await msg.ack()

    async def close_redis() -> None:
        await redis.aclose()

    app = AsgiFastStream(
        broker,
        asgi_routes=health_routes(dependency_checks(broker, redis, ns)),
        after_startup=[scanner.start],
        on_shutdown=[scanner.stop],
        after_shutdown=[close_redis],
    )
    return app
