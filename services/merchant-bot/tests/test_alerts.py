"""Alerts from events, each told once per state change: real Redis for the bot's state, the
fake Bot API for Telegram (through aiogram and the send queue). The gateway's answers are
scripted here (`httpx.MockTransport`); the end-to-end test runs the same against the real one.

Survives: JetStream redelivering an event (told once), a merchant who blocked the bot
(recorded, then skipped without a call), a flood of failed webhook attempts (one alert)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer

from autopay_contracts import (
    Credit,
    CreditAmbiguous,
    CreditUnmatched,
    MailboxAuthFailed,
    MailboxDown,
    MailboxUp,
    Order,
    OrderCreated,
    OrderExpired,
    WebhookDelivered,
    WebhookExhausted,
    WebhookFailed,
)
from autopay_merchant_bot.adapters.gateway import AdminApi
from autopay_merchant_bot.adapters.telegram import SendQueue
from autopay_merchant_bot.alerts import Alerts
from autopay_merchant_bot.context import BotContext
from autopay_merchant_bot.settings import MerchantBotSettings
from autopay_store.keys import Keys
from autopay_store.merchant_bot import MerchantBotStore
from autopay_store.secrets import SecretBox
from autopay_testing.telegram import FakeTelegram

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
CHAT = 4242


class Gateway:
    """The gateway's answers the alerts need, scripted."""

    def __init__(self) -> None:
        self.used, self.max = 0, 100
        self.expires_at = NOW + timedelta(days=20)
        self.requests: list[str] = []
        self.ledger_lag = 0
        """How many reads of a transaction answer 404 before the ledger shows it."""

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request.url.path)
        path = request.url.path
        if path.startswith("/admin/mailboxes/"):
            return httpx.Response(200, json={"merchant_id": "7", "mailbox_id": "mb", "gmail": "a"})
        if path.startswith("/api/transactions/"):
            if self.ledger_lag > 0:
                self.ledger_lag -= 1
                return httpx.Response(404, json={"detail": "Tranzaksiya topilmadi."})
            return httpx.Response(200, json={"transaction": {"id": path.rsplit("/", 1)[1]}})
        if path == "/api/subscription":
            body = {"active": True, "tariff_name": "Trial", "expires_at": "2026-12-20 10:00:00"}
            return httpx.Response(
                200, json=body | {"payments_used": self.used, "max_payments": self.max}
            )
        if path == "/admin/merchants/7":
            return httpx.Response(
                200,
                json={
                    "merchant_id": "7",
                    "active": True,
                    "expires_at": self.expires_at.isoformat(),
                },
            )
        return httpx.Response(404, json={"detail": "not scripted"})


@pytest.fixture
async def world(redis_client, redis_prefix):
    gateway = Gateway()
    async with FakeTelegram() as fake:
        fake.add_chat(CHAT)
        store = MerchantBotStore(
            redis_client, Keys(redis_prefix), SecretBox(SecretBox.generate_key())
        )
        await store.link(CHAT, "7", "ap_live_botkey")
        session = AiohttpSession(api=TelegramAPIServer.from_base(fake.url))
        session.middleware(
            SendQueue(
                global_per_s=100, chat_per_s=100, attempts=2, on_unreachable=store.mark_unreachable
            )
        )
        bot = Bot("1000003:alerts-test", session=session)
        http = httpx.AsyncClient(transport=httpx.MockTransport(gateway))
        settings = MerchantBotSettings(
            bot_token="1000003:alerts-test", webhook_failures_alert=3, gateway_url="http://gw"
        )
        ctx = BotContext(settings, store, AdminApi(http, "http://gw", "t"), http, bot)
        yield Alerts(ctx), fake, gateway, store
        await bot.session.close()
        await http.aclose()


def texts(fake: FakeTelegram) -> list[str]:
    return [m.text for m in fake.bot_messages(CHAT)]


def _order(order_id: str, amount: int = 5_003_700) -> Order:
    return Order(
        order_id=order_id,
        merchant_id="7",
        mailbox_id="mb",
        gmail="shop@gmail.com",
        card_last4="6412",
        amount_tiyin=amount,
        created_at=NOW - timedelta(minutes=2),
        expires_at=NOW + timedelta(minutes=3),
    )


def _credit(credit_id: str = "cr1", amount: int = 5_000_000) -> Credit:
    return Credit(
        credit_id=credit_id,
        mailbox_id="mb",
        gmail="shop@gmail.com",
        card_last4="6412",
        amount_tiyin=amount,
        occurred_at=NOW,
        received_at=NOW,
        format="uzcard-email",
    )


def _webhook(kind, attempt: int = 1, **kw):
    base = {
        "delivery_id": kw.pop("delivery_id", "dl1"),
        "merchant_id": "7",
        "order_id": "10001",
        "order_event": "paid",
        "url": "https://shop.example/hook",
        "attempt": attempt,
    }
    return kind(**base, **kw)


async def test_an_unmatched_credit_offers_the_cards_open_orders_once(world):
    alerts, fake, _, _ = world
    await alerts.handle(OrderCreated(order=_order("10001", 5_003_700)), NOW)
    await alerts.handle(OrderCreated(order=_order("10002", 7_000_000)), NOW)
    await alerts.handle(OrderCreated(order=_order("10003", 5_000_100)), NOW)
    await alerts.handle(OrderExpired(order=_order("10002", 7_000_000), expired_at=NOW), NOW)
    event = CreditUnmatched(credit=_credit(), merchant_id="7", reason="no order")
    await alerts.handle(event, NOW)
    await alerts.handle(event, NOW)  # redelivered
    alerts_sent = [m for m in fake.bot_messages(CHAT) if m.reply_markup]
    assert len(alerts_sent) == 1
    data = alerts_sent[0].callback_data
    assert data == ["m:cr1:10003", "m:cr1:10001", "m:cr1:10002", "d:cr1"]  # closest amount first


async def test_a_credit_alert_waits_for_the_ledger_so_its_buttons_work(world, monkeypatch):
    from autopay_merchant_bot import alerts as module

    alerts, fake, gateway, _ = world
    monkeypatch.setattr(module, "LEDGER_WAIT_STEP_S", 0.01)
    gateway.ledger_lag = 3
    await alerts.handle(CreditUnmatched(credit=_credit("cr3"), merchant_id="7", reason="-"), NOW)
    assert len([m for m in fake.bot_messages(CHAT) if m.reply_markup]) == 1
    assert gateway.requests.count("/api/transactions/cr3") == 4

    gateway.ledger_lag = 1000  # never there: no alert now, the event comes back later
    with pytest.raises(module.LedgerBehind):
        await alerts.handle(
            CreditUnmatched(credit=_credit("cr4"), merchant_id="7", reason="-"), NOW
        )
    gateway.ledger_lag = 0
    await alerts.handle(CreditUnmatched(credit=_credit("cr4"), merchant_id="7", reason="-"), NOW)
    assert len([m for m in fake.bot_messages(CHAT) if m.reply_markup]) == 2


async def test_an_ambiguous_credit_offers_the_matchers_candidates_first(world):
    alerts, fake, _, _ = world
    for order_id in ("10001", "10002", "10003"):
        await alerts.handle(OrderCreated(order=_order(order_id, 5_000_000)), NOW)
    event = CreditAmbiguous(
        credit=_credit("cr2"), merchant_id="7", candidate_order_ids=("10003", "10001")
    )
    await alerts.handle(event, NOW)
    (alert,) = [m for m in fake.bot_messages(CHAT) if m.reply_markup]
    assert set(alert.callback_data[:2]) == {"m:cr2:10001", "m:cr2:10003"}
    assert "m:cr2:10002" in alert.callback_data[2:]
    assert alert.callback_data[-1] == "d:cr2"


async def test_a_failing_endpoint_is_told_once_then_its_recovery(world):
    alerts, fake, _, _ = world
    for attempt in range(1, 7):
        await alerts.handle(_webhook(WebhookFailed, attempt, error="HTTP 503"), NOW)
    assert sum("503" in t for t in texts(fake)) == 1
    await alerts.handle(_webhook(WebhookDelivered, 7, status_code=200), NOW)
    await alerts.handle(_webhook(WebhookDelivered, 7, delivery_id="dl2", status_code=200), NOW)
    assert sum(t.startswith("🟢") for t in texts(fake)) == 1
    for _ in range(2):
        await alerts.handle(_webhook(WebhookExhausted, 10, delivery_id="dl9", error="timeout"), NOW)
    assert sum("⛔" in t for t in texts(fake)) == 1


async def test_quota_is_told_at_80_and_100_percent_once_each(world):
    alerts, fake, gateway, _ = world
    for used, order_id in ((50, "1"), (80, "2"), (85, "3"), (100, "4"), (100, "5")):
        gateway.used = used
        await alerts.handle(OrderCreated(order=_order(order_id)), NOW)
    told = [t for t in texts(fake) if "/subscription" in t]
    assert len(told) == 2 and "80" in told[0] and "100 / 100" in told[1]


async def test_the_subscription_end_is_told_once(world):
    alerts, fake, gateway, _ = world
    await alerts.sweep_expiring(NOW)
    assert texts(fake) == []
    gateway.expires_at = NOW + timedelta(days=2)
    await alerts.sweep_expiring(NOW)
    await alerts.sweep_expiring(NOW + timedelta(hours=1))
    assert len(texts(fake)) == 1 and "⏰" in texts(fake)[0]


async def test_mailbox_health_changes(world):
    alerts, fake, _, _ = world
    at = NOW - timedelta(minutes=10)
    for event in (MailboxDown, MailboxUp, MailboxDown):  # a short drop: nothing
        await alerts.handle(event(mailbox_id="mb", gmail="shop@gmail.com", at=at), NOW)
    await alerts.handle(MailboxUp(mailbox_id="mb", gmail="shop@gmail.com", at=at), NOW)
    assert texts(fake) == []
    await alerts.handle(MailboxDown(mailbox_id="mb", gmail="shop@gmail.com", at=at), NOW)
    await alerts.mailboxes_down_for_long(NOW, grace_s=60)
    await alerts.mailboxes_down_for_long(NOW, grace_s=60)
    await alerts.handle(MailboxAuthFailed(mailbox_id="mb", gmail="shop@gmail.com", at=at), NOW)
    await alerts.handle(MailboxAuthFailed(mailbox_id="mb", gmail="shop@gmail.com", at=NOW), NOW)
    await alerts.handle(MailboxUp(mailbox_id="mb", gmail="shop@gmail.com", at=NOW), NOW)
    assert [t[0] for t in texts(fake)] == ["🟠", "🔴", "🟢"]


async def test_a_chat_that_blocked_the_bot_is_recorded_and_then_skipped(world):
    alerts, fake, _, store = world
    fake.block(CHAT)
    for attempt in range(3, 6):
        await alerts.handle(
            _webhook(WebhookExhausted, attempt, delivery_id=f"x{attempt}", error="e"), NOW
        )
    assert (await store.chat(CHAT)).unreachable
    assert len(fake.calls("sendMessage")) == 1  # tried once, then skipped
    assert texts(fake) == []
