"""Composition root: wires Redis, the NATS broker, the credit consumer, the expiry scanner and
the reconciler."""

from __future__ import annotations

import logging

from faststream.asgi import AsgiFastStream
from faststream.nats import ConsumerConfig

from autopay_contracts.permissions import SERVICES, inbox_prefix
from autopay_contracts.streams import CREDITS
from autopay_matcher.consumer import CreditConsumer
from autopay_matcher.ledger import LedgerConsumer
from autopay_matcher.reconciler import Reconciler
from autopay_matcher.service import Clock, ExpiryScanner, Matcher, system_clock
from autopay_matcher.settings import MatcherSettings
from autopay_runtime.compat.faststream import jetstream
from autopay_runtime.connections import dependency_checks, nats_broker, redis_client
from autopay_runtime.health import health_routes
from autopay_runtime.publishing import EventPublisher
from autopay_store.keys import Keys
from autopay_store.ledger import Ledger
from autopay_store.mailboxes import MailboxOwners
from autopay_store.orders import OrderBook
from autopay_store.reconcile import ReconcileState

GRACEFUL_TIMEOUT_S = 15.0
PUBLISHED_EVENTS = SERVICES["matcher"].events
UNLIMITED = -1
"""The consumer's delivery limit: none. A credit is never dropped for an outage."""


def build_app(settings: MatcherSettings, clock: Clock = system_clock) -> AsgiFastStream:
    ns = settings.ns
    redis = redis_client(settings.redis_url, "matcher")
    keys = Keys(settings.redis_prefix)
    broker = nats_broker(
        settings.nats_url,
        inbox_prefix=inbox_prefix("matcher"),  # replies only this service may read
        name="matcher",
        graceful_timeout=GRACEFUL_TIMEOUT_S,
        log_level=logging.DEBUG,  # per-message access lines only when debugging
    )
    book = OrderBook(
        redis,
        keys,
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
        max_backoff_s=settings.retry_max_delay_seconds,
    )

    def broker_jetstream():
        return jetstream(broker)

    consumer = CreditConsumer(
        broker_jetstream,
        matcher,
        publisher,
        subject=ns.credit("*", "received"),
        stream=CREDITS.name(ns),
        durable=settings.consumer_name,
        config=consumer_config(settings),
        batch=settings.fetch_batch,
        fetch_timeout_s=settings.fetch_timeout_seconds,
        retry_delay_s=settings.retry_delay_seconds,
        retry_max_delay_s=settings.retry_max_delay_seconds,
        decision_timeout_s=settings.decision_timeout_seconds,
        graceful_timeout_s=GRACEFUL_TIMEOUT_S,
    )
    reconciler = Reconciler(
        broker_jetstream,
        matcher,
        ReconcileState(redis, keys, CREDITS.name(ns)),
        stream=CREDITS.name(ns),
        subject=ns.all_of(CREDITS.aggregate),
        durable=settings.consumer_name,
        interval_s=settings.reconcile_interval_seconds,
        min_age_s=settings.reconcile_min_age_seconds,
        batch=settings.reconcile_batch,
        decision_timeout_s=settings.decision_timeout_seconds,
    )
    ledger_consumer = LedgerConsumer(
        broker_jetstream,
        Ledger(redis, keys),
        MailboxOwners(redis, keys),
        ns,
        stream=CREDITS.name(ns),
        subject=ns.all_of(CREDITS.aggregate),
        durable=settings.ledger_consumer_name,
    )

    async def close_redis() -> None:
        await redis.aclose()

    app = AsgiFastStream(
        broker,
        asgi_routes=health_routes(dependency_checks(broker, redis, ns)),
        after_startup=[consumer.start, ledger_consumer.start, scanner.start, reconciler.start],
        on_shutdown=[consumer.stop, ledger_consumer.stop, scanner.stop, reconciler.stop],
        after_shutdown=[close_redis],
    )
    return app


def consumer_config(settings: MatcherSettings) -> ConsumerConfig:
    """The credit consumer's durable settings (also in the AsyncAPI document)."""
    return ConsumerConfig(ack_wait=settings.ack_wait_seconds, max_deliver=UNLIMITED)
