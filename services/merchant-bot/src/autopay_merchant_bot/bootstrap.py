"""Composition root: settings → Redis, NATS, the gateway client, aiogram, consumers, sweeps."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

import httpx
import structlog
from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.fsm.storage.memory import MemoryStorage
from faststream.asgi import AsgiFastStream

from autopay_contracts.permissions import inbox_prefix
from autopay_contracts.streams import ACCOUNTS
from autopay_merchant_bot import consumers
from autopay_merchant_bot.adapters.gateway import AdminApi
from autopay_merchant_bot.adapters.telegram import SendQueue
from autopay_merchant_bot.alerts import Alerts
from autopay_merchant_bot.chats import ChatState
from autopay_merchant_bot.context import BotContext
from autopay_merchant_bot.flows import routers
from autopay_merchant_bot.settings import MerchantBotSettings
from autopay_runtime.compat.faststream import jetstream
from autopay_runtime.connections import dependency_checks, nats_broker
from autopay_runtime.health import health_routes
from autopay_runtime.redis_batching import batching_redis_client
from autopay_runtime.waiting import cancel_and_wait
from autopay_store.keys import Keys
from autopay_store.merchant_bot import MerchantBotStore, bot_journal
from autopay_store.secrets import SecretBox

log = structlog.get_logger("autopay_merchant_bot")

DOWN_SWEEP_S = 15.0


def build_bot(settings: MerchantBotSettings, store: MerchantBotStore) -> Bot:
    session = AiohttpSession(api=TelegramAPIServer.from_base(settings.telegram_api_url))
    session.middleware(
        SendQueue(
            global_per_s=settings.global_sends_per_s,
            chat_per_s=settings.chat_sends_per_s,
            attempts=settings.send_attempts,
            on_unreachable=store.mark_unreachable,
        )
    )
    return Bot(
        settings.bot_token.get_secret_value(),
        session=session,
        default=DefaultBotProperties(parse_mode="HTML", link_preview_is_disabled=True),
    )


def build_dispatcher(ctx: BotContext) -> Dispatcher:
    # Conversation state (which step of adding a card) lives in memory: one replica polls,
    # and a flow cut by a restart is started again by the user (a password sent into no flow
    # is still deleted: see flows.onboarding.anything_else).
    dp = Dispatcher(storage=MemoryStorage())
    dp["ctx"] = ctx
    dp.update.outer_middleware(ChatState(ctx.store))
    dp.include_routers(*routers())
    return dp


async def run_sweeps(alerts: Alerts, settings: MerchantBotSettings) -> None:
    """Mailboxes down for long (every few seconds) and subscriptions ending (hourly)."""
    last_expiry = 0.0
    loop = asyncio.get_running_loop()
    while True:
        try:
            now = datetime.now(UTC)
            await alerts.mailboxes_down_for_long(now, settings.mailbox_down_grace_s)
            if loop.time() - last_expiry >= settings.sweep_interval_s:
                await alerts.sweep_expiring(now)
                last_expiry = loop.time()
        except Exception:
            log.exception("alert sweep failed; retried next round")
        await asyncio.sleep(DOWN_SWEEP_S)


def build_app(settings: MerchantBotSettings) -> AsgiFastStream:
    if not settings.bot_token.get_secret_value():
        raise SystemExit("AUTOPAY_BOT_TOKEN is required (the bot's token from @BotFather)")
    broker = nats_broker(
        settings.nats_url,
        inbox_prefix=inbox_prefix("merchant-bot"),
        name="merchant-bot",
        graceful_timeout=10.0,
        log_level=logging.DEBUG,
    )
    redis = batching_redis_client(settings.redis_url, "merchant-bot")
    keys = Keys(settings.redis_prefix)
    # Which chat is which merchant, and the subscriptions sold, survive a Redis loss.
    journal = bot_journal(
        redis, keys, lambda: broker.key_value(ACCOUNTS.name(settings.ns), declare=False)
    )
    store = MerchantBotStore(
        redis, keys, SecretBox(settings.secret_keys.get_secret_value()), journal=journal
    )
    http = httpx.AsyncClient(timeout=settings.request_timeout_s)
    bot = build_bot(settings, store)
    ctx = BotContext(
        settings=settings,
        store=store,
        admin=AdminApi(
            http, settings.admin_url.rstrip("/"), settings.admin_token.get_secret_value()
        ),
        http=http,
        bot=bot,
    )
    alerts = Alerts(ctx)
    dp = build_dispatcher(ctx)
    pulls = consumers.consumers(
        lambda: jetstream(broker),
        alerts,
        settings.ns,
        durable=settings.durable,
        lookback_s=settings.consumer_lookback_s,
    )
    tasks: list[asyncio.Task] = []

    async def start_bot() -> None:
        for pull in pulls:
            await pull.start()
        tasks.append(
            asyncio.ensure_future(
                dp.start_polling(
                    bot,
                    handle_signals=False,
                    close_bot_session=False,
                    polling_timeout=settings.polling_timeout_s,
                    allowed_updates=dp.resolve_used_update_types(),
                )
            )
        )
        tasks.append(asyncio.ensure_future(run_sweeps(alerts, settings)))
        tasks.append(asyncio.ensure_future(journal.run(settings.journal_sweep_s)))

    async def stop_bot() -> None:
        for pull in pulls:
            await pull.stop()
        with contextlib.suppress(RuntimeError):
            await dp.stop_polling()
        for task in tasks:
            await cancel_and_wait(task)

    async def close_clients() -> None:
        await bot.session.close()
        await http.aclose()
        await redis.aclose()

    checks = [*dependency_checks(broker, redis, settings.ns), ("telegram", _polling(tasks))]
    return AsgiFastStream(
        broker,
        asgi_routes=health_routes(checks),
        after_startup=[start_bot],
        on_shutdown=[stop_bot],
        after_shutdown=[close_clients],
    )


def _polling(tasks: list[asyncio.Task]):
    async def check() -> bool:
        return bool(tasks) and not tasks[0].done()

    return check
