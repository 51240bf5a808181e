"""Use case: turn events of the stream into alerts, each told once per state change.

- mailbox `auth_failed` at once, `down` once it lasted, and "recovered" after either;
- an unmatched or ambiguous credit, with a button per candidate order and one to dismiss;
- a webhook endpoint failing several times in a row (and recovering), an exhausted delivery;
- the subscription's payments at 80 % and 100 %, and its end in a few days (`sweep`);
- the subscription orders the bot created, once paid: the subscription is extended.

Events of merchants with no linked chat are skipped (that answer is remembered a few seconds:
`chats.MerchantChats`); a paid subscription order is completed all the same. A failure to reach
the gateway or Redis raises, so the consumer redelivers the event later.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import structlog
from aiogram.filters.callback_data import CallbackData
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup

from autopay_contracts import (
    CreditAmbiguous,
    CreditUnmatched,
    Event,
    MailboxAuthFailed,
    MailboxConnected,
    MailboxDown,
    MailboxUp,
    Order,
    OrderCancelled,
    OrderCreated,
    OrderExpired,
    OrderPaid,
    WebhookDelivered,
    WebhookExhausted,
    WebhookFailed,
)
from autopay_contracts.local_time import tashkent_minute
from autopay_merchant_bot import domain
from autopay_merchant_bot.adapters.gateway import GatewayRefused
from autopay_merchant_bot.context import BotContext
from autopay_merchant_bot.texts import say
from autopay_store.merchant_bot import BotChat, RecentOrder

log = structlog.get_logger("autopay_merchant_bot")

MailboxEvent = MailboxConnected | MailboxUp | MailboxDown | MailboxAuthFailed


LEDGER_WAIT_STEPS = 25
LEDGER_WAIT_STEP_S = 0.2


class LedgerBehind(Exception):
    """The ledger does not show the credit yet; its alert waits for it."""


class MatchPress(CallbackData, prefix="m"):
    """One tap under a credit alert: pay `order` with the credit `tx`."""

    tx: str
    order: str


class DismissPress(CallbackData, prefix="d"):
    tx: str


def recent(order: Order, status: str) -> RecentOrder:
    """The order as the bot remembers it, in its latest status."""
    return RecentOrder(
        order_id=order.order_id,
        merchant_id=order.merchant_id,
        mailbox_id=order.mailbox_id,
        card_last4=order.card_last4,
        amount_tiyin=order.amount_tiyin,
        status=status,
        created_at=order.created_at,
    )


class Alerts:
    def __init__(self, ctx: BotContext) -> None:
        self.ctx = ctx
        self.store = ctx.store

    async def handle(self, event: Event, now: datetime) -> None:
        if isinstance(event, MailboxEvent):
            await self.mailbox(event, now)
        elif isinstance(event, CreditUnmatched | CreditAmbiguous):
            await self.credit(event, now)
        elif isinstance(event, OrderCreated):
            await self.order_created(event)
        elif isinstance(event, OrderPaid | OrderExpired | OrderCancelled):
            await self.order_ended(event)
        elif isinstance(event, WebhookFailed | WebhookDelivered | WebhookExhausted):
            await self.webhook(event)

    # --- mailboxes --------------------------------------------------------------------------
    async def mailbox(self, event: MailboxEvent, now: datetime) -> None:
        current = await self.store.mailbox_state(event.mailbox_id)
        change = domain.mailbox_change(current, event.event_type)
        if change is None:
            return
        state = replace(change.state, gmail=event.gmail)
        down_since = event.at if change.down_since else None
        await self.store.set_mailbox_state(event.mailbox_id, state, down_since=down_since)
        if change.alert:
            await self._tell_mailbox_owner(event.mailbox_id, event.gmail, change.alert)

    async def mailboxes_down_for_long(self, now: datetime, grace_s: float) -> None:
        """Tell the mailboxes that stayed down longer than `grace_s` (run periodically)."""
        for mailbox_id in await self.store.down_for_long(now - timedelta(seconds=grace_s)):
            current = await self.store.mailbox_state(mailbox_id)
            change = domain.down_lasted(current)
            if change is None:
                if current is not None:
                    await self.store.set_mailbox_state(mailbox_id, current)  # off the list
                continue
            gmail = current.gmail if current else ""
            await self.store.set_mailbox_state(mailbox_id, replace(change.state, gmail=gmail))
            await self._tell_mailbox_owner(mailbox_id, gmail, "mailbox_down")

    async def _tell_mailbox_owner(self, mailbox_id: str, gmail: str, key: str) -> None:
        merchant_id = await self.ctx.admin.mailbox_owner(mailbox_id)
        chat = await self.ctx.chats.of_merchant(merchant_id) if merchant_id else None
        if chat is None:
            return
        await self.ctx.tell(chat, key, gmail=gmail or mailbox_id)

    # --- credits ----------------------------------------------------------------------------
    async def credit(self, event: CreditUnmatched | CreditAmbiguous, now: datetime) -> None:
        credit = event.credit
        if credit.test_mode:
            return  # the sandbox's own credits are the merchant's experiments
        chat = await self.ctx.chats.of_merchant(event.merchant_id)
        if chat is None:
            return
        await self._ledger_has(chat, credit.credit_id)
        if not await self.store.first_time(f"credit:{credit.credit_id}"):
            return
        since = now - timedelta(seconds=self.ctx.settings.candidate_window_s)
        recent = await self.store.recent_orders(
            event.merchant_id, credit.mailbox_id, credit.card_last4, since
        )
        named = event.candidate_order_ids if isinstance(event, CreditAmbiguous) else ()
        offered = domain.candidates(
            recent, credit.amount_tiyin, self.ctx.settings.candidate_orders, tuple(named)
        )
        language = self.ctx.language(chat)
        rows = [
            [
                InlineKeyboardButton(
                    text=say(
                        language,
                        "candidate_button",
                        order_id=order.order_id,
                        amount=domain.som(order.amount_tiyin),
                        status=say(language, f"status_{order.status}"),
                    ),
                    callback_data=MatchPress(tx=credit.credit_id, order=order.order_id).pack(),
                )
            ]
            for order in offered
        ]
        rows.append(
            [
                InlineKeyboardButton(
                    text=say(language, "dismiss_button"),
                    callback_data=DismissPress(tx=credit.credit_id).pack(),
                )
            ]
        )
        key = "credit_ambiguous" if isinstance(event, CreditAmbiguous) else "credit_unmatched"
        await self.ctx.tell(
            chat,
            key,
            reply_markup=InlineKeyboardMarkup(inline_keyboard=rows),
            amount=domain.som(credit.amount_tiyin),
            card_last4=credit.card_last4,
            occurred_at=tashkent_minute(credit.occurred_at),
        )
        if not offered:
            await self.ctx.tell(chat, "no_candidates")

    async def _ledger_has(self, chat: BotChat, transaction_id: str) -> None:
        """Wait (briefly) until the merchant's ledger shows the credit: the matcher writes it
        from the same decision, a moment later, and a button that pressed before it exists
        would be refused. Raises `LedgerBehind` (the event comes back later) if it does not."""
        api = self.ctx.merchant_api(chat)
        if api is None:
            return
        for _ in range(LEDGER_WAIT_STEPS):
            try:
                await api.transaction(transaction_id)
                return
            except GatewayRefused as exc:
                if exc.status != 404:
                    raise
            await asyncio.sleep(LEDGER_WAIT_STEP_S)
        raise LedgerBehind(transaction_id)

    # --- orders -----------------------------------------------------------------------------
    async def order_created(self, event: OrderCreated) -> None:
        order = event.order
        if order.test_mode:
            return
        chat = await self.ctx.chats.of_merchant(order.merchant_id)
        if chat is None:
            return
        await self.store.remember_order(recent(order, "waiting"))
        await self.quota(chat)

    async def quota(self, chat: BotChat) -> None:
        api = self.ctx.merchant_api(chat)
        if api is None or chat.merchant_id is None:
            return
        try:
            sub = await api.subscription()
        except GatewayRefused:
            return
        level = domain.quota_level(sub["payments_used"], sub["max_payments"])
        period = f"{chat.merchant_id}:{sub['expires_at']}:{sub['max_payments']}"
        previous = await self.store.state("quota", period)
        if level and (previous is None or int(previous) < level):
            await self.store.transition("quota", period, str(level))
            await self.ctx.tell(
                chat, f"quota_{level}", used=sub["payments_used"], max=sub["max_payments"]
            )

    async def order_ended(self, event: OrderPaid | OrderExpired | OrderCancelled) -> None:
        order = event.order
        if isinstance(event, OrderPaid):
            purchase = await self.store.purchase(order.order_id)
            if purchase is not None:
                await self._complete_purchase(purchase)
        if order.test_mode or await self.ctx.chats.of_merchant(order.merchant_id) is None:
            return
        status = {"order.paid": "paid", "order.expired": "expired"}.get(
            event.event_type, "cancelled"
        )
        await self.store.remember_order(recent(order, status))

    async def _complete_purchase(self, purchase) -> None:
        """A subscription order the bot created is paid: confirm it with the operator's key
        (only the operator's own order answers there, whatever an event claims), then extend
        the buyer's subscription (the admin API applies one order id once)."""
        operator = self.ctx.operator_api()
        if operator is None:
            log.error("a subscription order was paid but no operator key is set")
            return
        found = await operator.check_payment(purchase.order_id)
        if found.get("status") != "paid":
            return
        merchant = await self.ctx.admin.extend_subscription(
            purchase.merchant_id, purchase.tariff, purchase.order_id
        )
        log.info(
            "subscription extended", merchant_id=purchase.merchant_id, order_id=purchase.order_id
        )
        if not await self.store.first_time(f"purchase:{purchase.order_id}"):
            return
        chat = await self.store.chat(purchase.chat_id)
        expires = datetime.fromisoformat(merchant["expires_at"])
        await self.ctx.tell(
            chat, "purchase_paid", tariff=purchase.tariff, expires_at=tashkent_minute(expires)
        )

    # --- webhooks ---------------------------------------------------------------------------
    async def webhook(self, event: WebhookFailed | WebhookDelivered | WebhookExhausted) -> None:
        chat = await self.ctx.chats.of_merchant(event.merchant_id)
        if chat is None:
            return
        if isinstance(event, WebhookDelivered):
            await self.store.reset_webhook_failures(event.merchant_id)
            if await self.store.transition("webhook", event.merchant_id, "ok") == "failing":
                await self.ctx.tell(chat, "webhook_recovered")
            return
        if isinstance(event, WebhookExhausted):
            if await self.store.first_time(f"exhausted:{event.delivery_id}"):
                await self.ctx.tell(
                    chat, "webhook_exhausted", order_id=event.order_id, error=event.error[:200]
                )
            return
        count = await self.store.count_webhook_failure(event.merchant_id)
        if count < self.ctx.settings.webhook_failures_alert:
            return
        if await self.store.transition("webhook", event.merchant_id, "failing") != "failing":
            await self.ctx.tell(
                chat, "webhook_failing", url=event.url, count=count, error=event.error[:200]
            )

    # --- subscriptions ending ---------------------------------------------------------------
    async def sweep_expiring(self, now: datetime) -> None:
        """Tell every linked merchant whose subscription ends within the warning days."""
        horizon = timedelta(days=self.ctx.settings.expiry_warning_days)
        for merchant_id in await self.store.linked_merchants():
            chat = await self.store.chat_of_merchant(merchant_id)
            if chat is None:
                continue
            try:
                found = await self.ctx.admin.merchant(merchant_id)
            except GatewayRefused:
                continue
            expires = datetime.fromisoformat(found["expires_at"]).astimezone(UTC)
            if not found["active"] or expires - now > horizon:
                continue
            if await self.store.first_time(f"expiring:{merchant_id}:{found['expires_at']}"):
                await self.ctx.tell(chat, "expiring", expires_at=tashkent_minute(expires))
