"""Flow: one tap under a credit alert. A candidate's button pays that order with the credit
(a manual match, made with the bot's key, so the audit says it came through the bot); the
gateway checks everything again (same merchant and card, order waiting or expired, credit not
used) and fires the order's webhook. The dismiss button marks the credit handled."""

from __future__ import annotations

from aiogram import Router
from aiogram.types import CallbackQuery, Message

from autopay_merchant_bot.adapters.gateway import GatewayRefused, GatewayUnavailable
from autopay_merchant_bot.alerts import DismissPress, MatchPress
from autopay_merchant_bot.context import BotContext
from autopay_merchant_bot.texts import say
from autopay_store.merchant_bot import BotChat

router = Router(name="matching")


@router.callback_query(MatchPress.filter())
async def match(
    query: CallbackQuery, callback_data: MatchPress, ctx: BotContext, chat: BotChat
) -> None:
    await query.answer()
    api = ctx.merchant_api(chat)
    if api is None or not isinstance(query.message, Message):
        return
    language = ctx.language(chat)
    try:
        await api.match(callback_data.tx, callback_data.order)
    except GatewayRefused as exc:
        await query.message.answer(say(language, "match_failed", detail=exc.detail))
        return
    except GatewayUnavailable:
        await query.message.answer(say(language, "error", detail="gateway unavailable"))
        return
    await query.message.edit_reply_markup(reply_markup=None)
    await query.message.answer(say(language, "matched", order_id=callback_data.order))


@router.callback_query(DismissPress.filter())
async def dismiss(
    query: CallbackQuery, callback_data: DismissPress, ctx: BotContext, chat: BotChat
) -> None:
    await query.answer()
    api = ctx.merchant_api(chat)
    if api is None or not isinstance(query.message, Message):
        return
    language = ctx.language(chat)
    try:
        await api.dismiss(callback_data.tx)
    except GatewayRefused as exc:
        await query.message.answer(say(language, "match_failed", detail=exc.detail))
        return
    except GatewayUnavailable:
        await query.message.answer(say(language, "error", detail="gateway unavailable"))
        return
    await query.message.edit_reply_markup(reply_markup=None)
    await query.message.answer(say(language, "dismissed"))
