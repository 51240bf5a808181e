"""Flow: one tap under a credit alert. A candidate's button pays that order with the credit
(a manual match, made with the bot's key, so the audit says it came through the bot); the
gateway checks everything again (same merchant and card, order waiting or expired, credit not
used) and fires the order's webhook. The dismiss button marks the credit handled."""

from __future__ import annotations

from aiogram import Router
from aiogram.types import CallbackQuery

from autopay_merchant_bot.adapters.gateway import MerchantApi
from autopay_merchant_bot.alerts import DismissPress, MatchPress
from autopay_merchant_bot.context import BotContext
from autopay_merchant_bot.flows.common import press_through
from autopay_store.merchant_bot import BotChat

router = Router(name="matching")


@router.callback_query(MatchPress.filter())
async def match(
    query: CallbackQuery, callback_data: MatchPress, ctx: BotContext, chat: BotChat
) -> None:
    async def pay(api: MerchantApi) -> object:
        return await api.match(callback_data.tx, callback_data.order)

    await press_through(query, ctx, chat, pay, "matched", order_id=callback_data.order)


@router.callback_query(DismissPress.filter())
async def dismiss(
    query: CallbackQuery, callback_data: DismissPress, ctx: BotContext, chat: BotChat
) -> None:
    async def handled(api: MerchantApi) -> object:
        return await api.dismiss(callback_data.tx)

    await press_through(query, ctx, chat, handled, "dismissed")
