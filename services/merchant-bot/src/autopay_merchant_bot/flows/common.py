"""Small helpers the flows share."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiogram.types import CallbackQuery, Message

from autopay_merchant_bot.adapters.gateway import GatewayRefused, GatewayUnavailable, MerchantApi
from autopay_merchant_bot.context import BotContext
from autopay_merchant_bot.texts import say
from autopay_store.merchant_bot import BotChat


async def linked_api(message: Message, ctx: BotContext, chat: BotChat) -> MerchantApi | None:
    """The merchant's API for this chat, or None after telling the user to register."""
    api = ctx.merchant_api(chat)
    if api is None:
        await message.answer(say(ctx.language(chat), "not_linked"))
    return api


async def unavailable(message: Message, ctx: BotContext, chat: BotChat, exc: Exception) -> None:
    detail = "gateway unavailable" if isinstance(exc, GatewayUnavailable) else str(exc)
    await message.answer(say(ctx.language(chat), "error", detail=detail[:200]))


async def press_through(
    query: CallbackQuery,
    ctx: BotContext,
    chat: BotChat,
    call: Callable[[MerchantApi], Awaitable[object]],
    done: str,
    refused: str = "match_failed",
    **values: object,
) -> None:
    """Make the call a button stands for; on success the message loses its buttons and the
    merchant is told `done`, on a refusal `refused` with the gateway's words."""
    await query.answer()
    api = ctx.merchant_api(chat)
    if api is None or not isinstance(query.message, Message):
        return
    language = ctx.language(chat)
    try:
        await call(api)
    except GatewayRefused as exc:
        await query.message.answer(say(language, refused, detail=exc.detail))
        return
    except GatewayUnavailable:
        await query.message.answer(say(language, "error", detail="gateway unavailable"))
        return
    await query.message.edit_reply_markup(reply_markup=None)
    await query.message.answer(say(language, done, **values))
