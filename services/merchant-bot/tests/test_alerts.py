"""Alerts from events, each told once per state change: real Redis for the bot's state, the
fake Bot API for Telegram (through aiogram and the send queue). The gateway's answers are
scripted here (`httpx.MockTransport`); the end-to-end test runs the same against the real one.

Survives: JetStream redelivering an event (told once), a merchant who blocked the bot
(recorded, then skipped without a call), a flood of failed webhook attempts (one alert), the
events of merchants with no chat (Redis asked once in a while, not per event)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from aiogram import Bot, Dispatcher
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
    OrderPaid,
    WebhookDelivered,
    WebhookExhausted,
    WebhookFailed,
)
from autopay_merchant_bot.adapters.gateway import AdminApi
from autopay_merchant_bot.adapters.telegram import SendQueue
from autopay_merchant_bot.alerts import Alerts
from autopay_merchant_bot.bootstrap import build_dispatcher
from autopay_merchant_bot.chats import MerchantChats
from autopay_merchant_bot.context import BotContext
from autopay_merchant_bot.settings import MerchantBotSettings
from autopay_store.keys import Keys
from autopay_store.merchant_bot import MerchantBotStore, Purchase
from autopay_store.secrets import SecretBox
from autopay_testing.telegram import FakeTelegram

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
CHAT = 4242
NEW_CHAT = 4343


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
        if path == "/admin/merchants" and request.method == "POST":  # a merchant joins
            return httpx.Response(
                201,
                json={
                    "merchant_id": "8",
                    "api_key": "ap_live_new",
                    "bot_key": "ap_bot_new",
                    "webhook_secret": "whsec_new",
                },
            )
        if path == "/api/check-payment":
            return httpx.Response(200, json={"status": "paid"})
        if path == "/admin/merchants/7/subscription":
            expires = (NOW + timedelta(days=30)).isoformat()
            return httpx.Response(200, json={"merchant_id": "7", "expires_at": expires})
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
            bot_token="1000003:alerts-test",
            webhook_failures_alert=3,
            gateway_url="http://gw",
            no_chat_ttl_s=60,  # longer than any test: only a link forgets "no chat"
            operator_api_key="ap_live_operator",
            operator_card_last4="9999",
            operator_gmail="operator@gmail.com",
        )
        ctx = BotContext(settings, store, AdminApi(http, "http://gw", "t"), http, bot)
        yield Alerts(ctx), fake, gateway, store
        await bot.session.close()
        await http.aclose()


def texts(fake: FakeTelegram) -> list[str]:
    return [m.text for m in fake.bot_messages(CHAT)]


def _order(order_id: str, amount: int = 5_003_700, merchant_id: str = "7") -> Order:
    return Order(
        order_id=order_id,
        merchant_id=merchant_id,
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
        "merchant_id": kw.pop("merchant_id", "7"),
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


# --- merchants without a chat -------------------------------------------------------------
def lookups(store: MerchantBotStore, monkeypatch) -> list[str]:
    """The merchants whose chat is read from Redis, in order, from now on."""
    asked: list[str] = []
    real = store.chat_of_merchant

    async def chat_of_merchant(merchant_id: str):
        asked.append(merchant_id)
        return await real(merchant_id)

    monkeypatch.setattr(store, "chat_of_merchant", chat_of_merchant)
    return asked


def exhausted(delivery_id: str, merchant_id: str = "8") -> WebhookExhausted:
    return _webhook(
        WebhookExhausted, 10, merchant_id=merchant_id, delivery_id=delivery_id, error="e"
    )


def told(fake: FakeTelegram, chat_id: int) -> list[str]:
    return [m.text for m in fake.bot_messages(chat_id) if "⛔" in m.text]


@contextlib.asynccontextmanager
async def polling(dp: Dispatcher, bot: Bot, fake: FakeTelegram) -> AsyncIterator[None]:
    task = asyncio.create_task(
        dp.start_polling(bot, handle_signals=False, close_bot_session=False, polling_timeout=5)
    )
    try:
        await fake.wait_for_call("getUpdates", timeout=5)
        yield
    finally:
        with contextlib.suppress(RuntimeError):
            await dp.stop_polling()
        await asyncio.wait_for(task, 5)


async def test_the_events_of_a_payment_without_a_chat_read_redis_once(world, monkeypatch):
    alerts, fake, _, store = world
    asked = lookups(store, monkeypatch)
    order = _order("20001", merchant_id="8")
    await alerts.handle(OrderCreated(order=order), NOW)
    await alerts.handle(OrderPaid(order=order, credit_id="cr9", paid_at=NOW), NOW)
    await alerts.handle(_webhook(WebhookDelivered, 1, merchant_id="8", status_code=200), NOW)
    await alerts.handle(exhausted("n1"), NOW)
    assert asked == ["8"]
    assert fake.calls("sendMessage") == []
    await alerts.handle(OrderCreated(order=_order("20002")), NOW)  # "7" has a chat: asked
    assert asked == ["8", "7"]


async def test_a_paid_subscription_is_completed_though_its_seller_has_no_chat(world, monkeypatch):
    alerts, fake, _, store = world
    asked = lookups(store, monkeypatch)
    order = _order("30001", merchant_id="operator")
    await store.remember_purchase(Purchase("30001", "7", "Pro", CHAT, order.amount_tiyin))
    await alerts.handle(OrderCreated(order=order), NOW)  # "no chat" remembered
    await alerts.handle(OrderPaid(order=order, credit_id="cr9", paid_at=NOW), NOW)
    assert asked == ["operator"]
    assert ["Pro" in t for t in texts(fake)] == [True]


async def test_a_merchant_who_links_a_chat_is_told_at_once(world, monkeypatch):
    alerts, fake, _, store = world
    asked = lookups(store, monkeypatch)
    await alerts.handle(exhausted("n1"), NOW)
    await alerts.handle(exhausted("n2"), NOW)
    assert asked == ["8"]  # "no chat" is remembered...
    async with polling(build_dispatcher(alerts.ctx), alerts.ctx.bot, fake):
        await fake.wait_for_bot_message(NEW_CHAT, after=fake.user_message(NEW_CHAT, "/start C"))
        sent = fake.user_message(NEW_CHAT, "Shop")
        await fake.wait_for_bot_message(NEW_CHAT, lambda m: "ID 8" in m.text, after=sent)
    assert (await store.chat(NEW_CHAT)).merchant_id == "8"
    await alerts.handle(exhausted("n3"), NOW)  # ...until the bot links the merchant's chat
    assert asked == ["8", "8"]
    assert len(told(fake, NEW_CHAT)) == 1


async def test_a_link_made_while_redis_is_read_is_not_hidden(world, monkeypatch):
    alerts, fake, _, store = world
    fake.add_chat(NEW_CHAT)
    real = store.chat_of_merchant

    async def linked_meanwhile(merchant_id: str):
        found = await real(merchant_id)  # no chat yet...
        await alerts.ctx.chats.link(NEW_CHAT, merchant_id, "ap_bot_new")  # ...linked now
        return found

    monkeypatch.setattr(store, "chat_of_merchant", linked_meanwhile)
    await alerts.handle(exhausted("n1"), NOW)
    monkeypatch.setattr(store, "chat_of_merchant", real)
    await alerts.handle(exhausted("n2"), NOW)
    assert len(told(fake, NEW_CHAT)) == 1


async def test_a_found_chat_is_read_each_time(world, monkeypatch):
    alerts, fake, _, store = world
    fake.add_chat(NEW_CHAT)
    asked = lookups(store, monkeypatch)
    await alerts.handle(exhausted("c1", merchant_id="7"), NOW)
    await store.link(NEW_CHAT, "7", "ap_live_other")  # relinked, not by this process
    await alerts.handle(exhausted("c2", merchant_id="7"), NOW)
    await store.redis.delete(store._merchant("7"))  # unlinked
    await alerts.handle(exhausted("c3", merchant_id="7"), NOW)
    assert asked == ["7", "7", "7"]
    assert len(told(fake, CHAT)) == 1
    assert len(told(fake, NEW_CHAT)) == 1


async def test_no_chat_is_remembered_for_a_while_and_for_so_many_merchants(world, monkeypatch):
    _, _, _, store = world
    asked = lookups(store, monkeypatch)
    now = [0.0]
    chats = MerchantChats(store, ttl_s=5, size=2, clock=lambda: now[0])
    for merchant_id in ("a", "b", "a", "c", "a", "b"):  # "b" is forgotten for "c"
        assert await chats.of_merchant(merchant_id) is None
    assert asked == ["a", "b", "c", "b"]
    now[0] = 5.0
    assert await chats.of_merchant("a") is None
    assert asked[-1] == "a"

    asked.clear()
    off = MerchantChats(store, ttl_s=0)
    for _ in range(3):
        assert await off.of_merchant("a") is None
    assert asked == ["a", "a", "a"]
