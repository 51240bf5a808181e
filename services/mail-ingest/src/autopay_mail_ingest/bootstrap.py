"""Composition root: wires NATS, Redis, the mailbox supervisor and the health routes."""

from __future__ import annotations

import asyncio
import ssl

from faststream.asgi import AsgiFastStream

from autopay_bankmail import parse_notification
from autopay_contracts.permissions import SERVICES, inbox_prefix
from autopay_mail_ingest import metrics, sandbox
from autopay_mail_ingest.config_feed import ConfigFeed
from autopay_mail_ingest.domain import WatchedMailbox
from autopay_mail_ingest.leases import Lease
from autopay_mail_ingest.settings import IngestSettings
from autopay_mail_ingest.supervisor import MailboxSupervisor
from autopay_mail_ingest.watcher import MailboxWatcher, ParseFn
from autopay_runtime.compat.faststream import jetstream
from autopay_runtime.connections import dependency_checks, nats_broker
from autopay_runtime.health import health_routes
from autopay_runtime.publishing import EventPublisher
from autopay_runtime.redis_batching import batching_redis_client
from autopay_store.keys import Keys
from autopay_store.mailbox_state import IngestStore, LeaseStore
from autopay_store.secrets import SecretBox

PUBLISHED_EVENTS = SERVICES["mail-ingest"].events


def build_app(
    settings: IngestSettings,
    *,
    parse: ParseFn | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> AsgiFastStream:
    ns = settings.ns
    metrics.MAILBOXES.factor = settings.silence_factor
    metrics.MAILBOXES.min_quiet_s = settings.silence_min_seconds
    broker = nats_broker(
        settings.nats_url,
        inbox_prefix=inbox_prefix("mail-ingest"),  # replies only this service may read
        name=settings.client_name,
        graceful_timeout=10.0,
        max_reconnect_attempts=-1,  # an outage of any length must not end the process' NATS
    )
    redis = batching_redis_client(settings.redis_url, settings.client_name)
    keys = Keys(settings.redis_prefix)
    store = IngestStore(
        redis,
        keys,
        evidence_ttl_s=settings.evidence_ttl_s,
        dedup_ttl_s=settings.dedup_ttl_s,
    )
    publisher = EventPublisher(broker, ns, PUBLISHED_EVENTS)
    gate = asyncio.Semaphore(max(1, settings.connect_concurrency))
    shared_ssl = ssl_context or ssl.create_default_context()
    parse_mail = parse or parse_notification

    def watcher_for(mailbox: WatchedMailbox, lease: Lease) -> MailboxWatcher:
        return MailboxWatcher(
            mailbox,
            settings=settings,
            store=store,
            publisher=publisher,
            connect_gate=gate,
            ssl_context=shared_ssl,
            parse=parse_mail,
            lease=lease,
        )

    secret_keys = settings.secret_keys.get_secret_value()
    secrets = SecretBox(secret_keys) if secret_keys.strip() else None
    leases = LeaseStore(redis, keys, settings.replica_id, settings.lease_seconds)
    supervisor = MailboxSupervisor(
        watcher_for,
        secrets,
        store,
        leases,
        lease_s=settings.lease_seconds,
        slack=settings.lease_slack,
    )

    sandbox.register(broker, publisher, ns, settings.sandbox_durable)
    feed = ConfigFeed(lambda: jetstream(broker), ns, supervisor.apply)

    async def close_redis() -> None:
        await redis.aclose()

    app = AsgiFastStream(
        broker,
        asgi_routes=health_routes(
            [*dependency_checks(broker, redis, ns), ("mailbox-config", feed.ready)]
        ),
        after_startup=[feed.start, supervisor.start],
        on_shutdown=[feed.stop, supervisor.stop],
        after_shutdown=[close_redis],
    )
    return app
