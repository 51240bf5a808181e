"""Composition root: wires settings → Redis, NATS, HTTP client, store, service, consumer."""

from __future__ import annotations

import functools
import logging

import redis.asyncio as aioredis
from faststream.asgi import AsgiFastStream
from faststream.nats import NatsBroker

from autopay_contracts.permissions import inbox_prefix
from autopay_notifier import handlers
from autopay_notifier.adapters.webhook_client import WebhookSender
from autopay_notifier.domain import RetryPolicy
from autopay_notifier.publishers import WebhookOutcomePublisher
from autopay_notifier.service import Limits, Notifier
from autopay_notifier.settings import NotifierSettings
from autopay_notifier.ssrf import GuardPolicy
from autopay_runtime.compat.faststream import jetstream
from autopay_runtime.connections import dependency_checks, nats_broker, open_redis
from autopay_runtime.health import health_routes
from autopay_runtime.redis_batching import batching_redis_client
from autopay_store.accounts import Accounts
from autopay_store.deliveries import DeliveryKeys, DeliveryStore
from autopay_store.keys import Keys
from autopay_store.secrets import SecretBox


class CachedSecretBox(SecretBox):
    """Decrypts each stored token once. Safe to cache: a token's plaintext never changes (no
    Fernet TTL is used), and a rotated webhook secret is a new token read from Redis on every
    attempt, so a rotation is seen at once."""

    def __init__(self, keys: str, cached: int = 4096) -> None:
        super().__init__(keys)
        self.decrypt = functools.lru_cache(maxsize=cached)(super().decrypt)  # type: ignore[method-assign]


def notifier_redis(settings: NotifierSettings) -> aioredis.Redis:
    """Thousands of concurrent attempts each record their outcome: their commands share
    pipelines (`batching_redis_client`), on pools bounded at `redis_max_connections` that
    *wait* for a free connection (an attempt that cannot record its outcome is re-sent after
    its lease). A Redis Cluster client waits likewise, for one of that many places."""
    if settings.redis_cluster:
        return open_redis(
            settings.redis_url,
            max_in_flight=settings.redis_max_connections,
            client_name="notifier",
            socket_timeout=5,
            socket_connect_timeout=5,
            health_check_interval=30,
        )
    return batching_redis_client(
        settings.redis_url,
        "notifier",
        timeout_s=5.0,
        max_connections=settings.redis_max_connections,
        pool_timeout_s=settings.redis_pool_timeout_s,
    )


def build_notifier(settings: NotifierSettings, broker: NatsBroker, redis) -> Notifier:
    guard = GuardPolicy(allow_loopback=settings.allow_http_loopback)
    accounts = Accounts(
        redis, Keys(settings.redis_prefix), CachedSecretBox(settings.secret_keys.get_secret_value())
    )
    return Notifier(
        store=DeliveryStore(
            redis,
            DeliveryKeys(settings.redis_prefix),
            retention_s=settings.delivery_retention_s,
            log_max=settings.delivery_log_max,
        ),
        sender=WebhookSender(
            guard,
            connect_timeout_s=settings.connect_timeout_s,
            total_timeout_s=settings.total_timeout_s,
            response_cap_bytes=settings.response_cap_bytes,
            per_origin_connections=settings.per_host_in_flight,
        ),
        secrets_for=accounts.webhook_secrets,
        publisher=WebhookOutcomePublisher(broker, settings.ns),
        policy=RetryPolicy(
            schedule=tuple(settings.retry_schedule_s),
            jitter=settings.retry_jitter,
            overload_floor_s=settings.overload_floor_s,
            retry_after_cap_s=settings.retry_after_cap_s,
        ),
        guard=guard,
        limits=Limits(
            max_outstanding=settings.max_outstanding,
            per_host_in_flight=settings.per_host_in_flight,
            per_host_queue=settings.per_host_queue,
            lease_s=settings.lease_s,
            poll_interval_s=settings.poll_interval_s,
            busy_defer_s=settings.busy_defer_s,
            max_defer_s=settings.max_defer_s,
        ),
        user_agent=settings.user_agent,
    )


def build_app(settings: NotifierSettings) -> AsgiFastStream:
    broker = nats_broker(
        settings.nats_url,
        inbox_prefix=inbox_prefix("notifier"),  # replies only this service may read
        name="notifier",
        graceful_timeout=15.0,
        log_level=logging.DEBUG,  # per-message access lines only when debugging
    )
    redis = notifier_redis(settings)
    notifier = build_notifier(settings, broker, redis)
    orders = handlers.consumer(
        lambda: jetstream(broker),
        notifier,
        settings.ns,
        durable=settings.durable,
        fetch_batch=settings.fetch_batch,
        lookback_s=settings.consumer_lookback_s,
    )

    async def start_scheduler() -> None:
        notifier.start()
        await orders.start()

    async def stop_deliveries() -> None:
        await orders.stop()
        await notifier.stop(settings.shutdown_grace_s)

    async def close_clients() -> None:
        await notifier.sender.aclose()  # type: ignore[attr-defined]
        await redis.aclose()

    app = AsgiFastStream(
        broker,
        asgi_routes=health_routes(dependency_checks(broker, redis, settings.ns)),
        after_startup=[start_scheduler],
        on_shutdown=[stop_deliveries],
        after_shutdown=[close_clients],
    )
    app.state_notifier = notifier  # type: ignore[attr-defined]
    return app
