"""Flow: the subscription (tariff, usage, expiry) and buying a period of a tariff.

Buying creates an AutoPay payment to the operator's own card with the operator's own key:
the product is paid through its own pipeline. The bot remembers the order as a purchase;
when the ORDERS stream says it is paid (`alerts.Alerts.order_ended`), the subscription is
extended through the admin API, once per order."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command
from aiogram.filters.callback_data import CallbackData
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message

from autopay_merchant_bot.adapters.gateway import GatewayRefused, GatewayUnavailable
from autopay_merchant_bot.context import BotContext
from autopay_merchant_bot.domain import som
from autopay_merchant_bot.flows.common import linked_api, unavailable
from autopay_merchant_bot.texts import say
from autopay_store.merchant_bot import BotChat, Purchase

router = Router(name="subscription")


class BuyPress(CallbackData, prefix="buy"):
    tariff: str


@router.message(Command("subscription", "buy"))
async def subscription(message: Message, ctx: BotContext, chat: BotChat) -> None:
    api = await linked_api(message, ctx, chat)
    if api is None:
        return
    language = ctx.language(chat)
    try:
        sub = await api.subscription()
        tariffs = [t for t in await ctx.admin.tariffs() if t["price_som"] > 0]
    except (GatewayRefused, GatewayUnavailable) as exc:
        await unavailable(message, ctx, chat, exc)
        return
    text = say(
        language,
        "subscription",
        tariff=sub["tariff_name"],
        state=say(language, "active" if sub["active"] else "inactive"),
        expires_at=sub["expires_at"],
        used=sub["payments_used"],
        max=sub["max_payments"],
    )
    if not tariffs or ctx.operator_api() is None:
        await message.answer(text + "\n\n" + say(language, "no_tariffs"))
        return
    rows = [
        [
            InlineKeyboardButton(
                text=say(
                    language,
                    "buy_button",
                    tariff=t["name"],
                    price=som(t["price_som"] * 100),
                    days=t["days"],
                ),
                callback_data=BuyPress(tariff=t["name"]).pack(),
            )
        ]
        for t in tariffs
        if len(BuyPress(tariff=t["name"]).pack().encode()) <= 64
    ]
    await message.answer(text, reply_markup=InlineKeyboardMarkup(inline_keyboard=rows))


@router.callback_query(BuyPress.filter())
async def buy(
    query: CallbackQuery, callback_data: BuyPress, ctx: BotContext, chat: BotChat
) -> None:
    await query.answer()
    if chat.merchant_id is None or not isinstance(query.message, Message):
        return
    language = ctx.language(chat)
    operator = ctx.operator_api()
    if operator is None:
        await query.message.answer(say(language, "purchase_unavailable"))
        return
    try:
        tariff = next(
            (t for t in await ctx.admin.tariffs() if t["name"] == callback_data.tariff), None
        )
        if tariff is None or tariff["price_som"] <= 0:
            await query.message.answer(say(language, "no_tariffs"))
            return
        created = await operator.create_payment(
            {
                "amount_base": tariff["price_som"],
                "card_last4": ctx.settings.operator_card_last4,
                "gmail": ctx.settings.operator_gmail,
                "client_user_id": chat.merchant_id,
                "client_user_data": {"purpose": "subscription", "tariff": tariff["name"]},
            },
            # one press, one order: a second tap of the same message replays the first
            idempotency_key=f"merchant-bot:buy:{query.message.chat.id}:"
            f"{query.message.message_id}:{tariff['name']}",
        )
    except (GatewayRefused, GatewayUnavailable) as exc:
        await unavailable(query.message, ctx, chat, exc)
        return
    await ctx.store.remember_purchase(
        Purchase(
            order_id=created["order_id"],
            merchant_id=chat.merchant_id,
            tariff=tariff["name"],
            chat_id=chat.chat_id,
            amount_tiyin=int(created["amount"]) * 100,
        )
    )
    await query.message.answer(
        say(
            language,
            "purchase_created",
            card_last4=ctx.settings.operator_card_last4,
            amount=som(int(created["amount"]) * 100),
            order_id=created["order_id"],
            minutes=5,
        )
    )
