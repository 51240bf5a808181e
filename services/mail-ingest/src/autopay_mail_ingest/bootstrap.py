"""Composition root: wires NATS, Redis, the mailbox supervisor and the health routes."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from faststream import AckPolicy
from faststream.asgi import AsgiFastStream
from faststream.nats import DeliverPolicy, JStream, NatsBroker

from autopay_bankmail import parse_notification
from autopay_contracts import parse_event
from autopay_contracts.streams import MAILBOX_CONFIG
from autopay_mail_ingest.domain import WatchedMailbox
from autopay_mail_ingest.publisher import EventPublisher
from autopay_mail_ingest.settings import IngestSettings
from autopay_mail_ingest.store import IngestStore
from autopay_mail_ingest.supervisor import Supervisor
from autopay_mail_ingest.watcher import MailboxWatcher, ParseFn
from autopay_runtime.connections import broker_ready, redis_client, redis_ready, streams_ready
from autopay_runtime.health import health_routes
from autopay_runtime.logging import get_logger
from autopay_store.keys import Keys
from autopay_store.secrets import SecretBox


def build_app(
    settings: IngestSettings,
    *,
    parse: ParseFn | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> AsgiFastStream:
    ns = settings.ns
    log = get_logger()
    broker = NatsBroker(settings.nats_url, name=settings.client_name, graceful_timeout=10.0)
    redis = redis_client(settings.redis_url, settings.client_name)
    store = IngestStore(
        redis,
        Keys(settings.redis_prefix),
        evidence_ttl_s=settings.evidence_ttl_s,
        dedup_ttl_s=settings.dedup_ttl_s,
    )
    publisher = EventPublisher(broker, ns)
    gate = asyncio.Semaphore(max(1, settings.connect_concurrency))
    shared_ssl = ssl_context or ssl.create_default_context()
    parse_mail = parse or parse_notification

    def watcher_for(mailbox: WatchedMailbox) -> MailboxWatcher:
        return MailboxWatcher(
            mailbox,
            settings=settings,
            store=store,
            publisher=publisher,
            connect_gate=gate,
            ssl_context=shared_ssl,
            parse=parse_mail,
        )

    secrets = SecretBox(settings.secret_keys) if settings.secret_keys.strip() else None
    supervisor = Supervisor(watcher_for, secrets, store)

    @broker.subscriber(
        ns.mailbox_config(),
        stream=JStream(MAILBOX_CONFIG.name(ns), declare=False),
        ordered_consumer=True,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.MANUAL,
        title="mail-ingest/mailbox-config",
    )
    async def on_mailbox_config(body: dict[str, Any]) -> None:
        """Every replica reads the whole latest-per-mailbox config and keeps following it."""
        try:
            event = parse_event(body)
        except ValueError as exc:
            log.error("mailbox.config_unreadable", error=str(exc)[:200])
            return
        await supervisor.apply(event)

    async def close_redis() -> None:
        await redis.aclose()

    app = AsgiFastStream(
        broker,
        asgi_routes=health_routes(
            [
                ("broker", broker_ready(broker)),
                ("redis", redis_ready(redis)),
                ("streams", streams_ready(broker, ns)),
            ]
        ),
        on_shutdown=[supervisor.stop_all],
        after_shutdown=[close_redis],
    )
    app.state = {"supervisor": supervisor, "store": store}  # type: ignore[attr-defined]
    return app
