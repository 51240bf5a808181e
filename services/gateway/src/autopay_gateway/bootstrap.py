"""Composition root: `build_app(settings)` wires adapters, use cases and routes. Nothing else."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI
from starlette.responses import Response

from autopay_contracts.permissions import SERVICES, inbox_prefix
from autopay_contracts.streams import ACCOUNTS
from autopay_gateway import admin, openapi
from autopay_gateway.adapters.imap_login import ImapLoginChecker
from autopay_gateway.api import router
from autopay_gateway.application import Gateway
from autopay_gateway.http import JsonResponse, MetricsMiddleware, install_error_handlers
from autopay_gateway.republish import Republisher
from autopay_gateway.settings import GatewaySettings
from autopay_gateway.transactions import Transactions
from autopay_gateway.webhooks import Webhooks
from autopay_runtime import tracing
from autopay_runtime.connections import dependency_checks, nats_broker
from autopay_runtime.health import failing_checks
from autopay_runtime.publishing import EventPublisher
from autopay_runtime.redis_batching import batching_redis_client
from autopay_runtime.waiting import cancel_and_wait
from autopay_store.accounts import Accounts
from autopay_store.deliveries import DeliveryKeys, DeliveryStore
from autopay_store.idempotency import IdempotencyStore
from autopay_store.invites import Invites
from autopay_store.journal import AccountJournal
from autopay_store.keys import Keys
from autopay_store.ledger import Ledger
from autopay_store.mailbox_state import MailboxHealth
from autopay_store.orders import OrderBook
from autopay_store.ratelimit import RateLimiter
from autopay_store.sandbox import SandboxCards
from autopay_store.secrets import SecretBox
from autopay_store.tariffs import Tariffs

PUBLISHED_EVENTS = SERVICES["gateway"].events


def build_app(settings: GatewaySettings, imap: ImapLoginChecker | None = None) -> FastAPI:
    """The gateway as an ASGI app; connections open in its lifespan. `/metrics` is not on it:
    `__main__` serves the metrics on the internal `metrics_port`. The admin API (`/admin/*`)
    is on it but answers only requests that came in on `admin_port` with the admin token
    (`__main__` listens there too when both are set)."""
    secrets = SecretBox(settings.secret_keys.get_secret_value())
    broker = nats_broker(settings.nats_url, name="gateway", inbox_prefix=inbox_prefix("gateway"))
    publisher = EventPublisher(
        broker, settings.ns, PUBLISHED_EVENTS, timeout_s=settings.publish_timeout_seconds
    )
    imap = imap or ImapLoginChecker(
        settings.imap_host, settings.imap_port, settings.imap_tls, settings.imap_timeout_seconds
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redis = batching_redis_client(settings.redis_url, "gateway")
        await broker.connect()
        keys = Keys(settings.redis_prefix)
        # Every account change the gateway makes is copied to the ACCOUNTS bucket, so a
        # Redis loss loses no merchant, key, card or secret (`autopay admin rebuild`).
        journal = AccountJournal(
            redis, keys, lambda: broker.key_value(ACCOUNTS.name(settings.ns), declare=False)
        )
        accounts = Accounts(redis, keys, secrets, journal)
        ledger = Ledger(redis, keys)
        orders = OrderBook(
            redis,
            keys,
            quarantine_s=settings.quarantine_seconds,
            window_lead_s=settings.window_lead_seconds,
            id_block=settings.order_ids_per_lease,
        )
        app.state.gateway = Gateway(
            settings=settings,
            accounts=accounts,
            orders=orders,
            publisher=publisher,
            idempotency=IdempotencyStore(
                redis,
                keys,
                settings.idempotency_ttl_seconds,
                pending_ttl_s=settings.idempotency_pending_seconds,
            ),
            limiter=RateLimiter(redis, keys),
            health=MailboxHealth(redis, keys),
            imap=imap,
            secrets=secrets,
            sandbox=SandboxCards(redis, keys, journal),
            transactions=Transactions(ledger, orders, publisher, settings.publish_attempts),
            webhooks=Webhooks(
                DeliveryStore(redis, DeliveryKeys(settings.redis_prefix)),
                accounts,
            ),
            tariffs=Tariffs(redis, keys, journal),
            invites=Invites(redis, keys),
            keys=keys,
        )
        app.state.readiness = dependency_checks(broker, redis, settings.ns)
        republisher = Republisher(
            orders,
            publisher,
            ledger=ledger,
            grace_s=settings.outbox_grace_seconds,
            interval_s=settings.outbox_interval_seconds,
            attempts=settings.publish_attempts,
        )
        sweeps = [
            asyncio.ensure_future(republisher.run()),
            asyncio.ensure_future(journal.run(settings.outbox_interval_seconds)),
        ]
        try:
            yield
        finally:
            for sweep in sweeps:
                await cancel_and_wait(sweep)
            await broker.stop()
            await redis.aclose()

    app = FastAPI(
        title="AutoPay API",
        description="AutoPayCard-compatible payment confirmation API.",
        version="1.0.0",
        lifespan=lifespan,
        default_response_class=JsonResponse,
    )
    app.state.broker = broker
    app.state.bot_handle = settings.bot_handle
    app.state.admin_access = admin.AdminAccess(
        settings.admin_port, settings.admin_token.get_secret_value()
    )
    install_error_handlers(app)
    app.include_router(router)
    app.include_router(admin.router)
    openapi.install(app)
    app.add_middleware(admin.AdminGate, access=app.state.admin_access)
    app.add_middleware(MetricsMiddleware)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> Response:
        return JsonResponse({"status": "ok"})

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> Response:
        failing = await failing_checks(app.state.readiness)
        if failing:
            return JsonResponse({"status": "not ready", "failing": failing}, 503)
        return JsonResponse({"status": "ready"})

    tracing.instrument_fastapi(app)
    return app
