"""Small helpers the flows share."""

from __future__ import annotations

from aiogram.types import Message

from autopay_merchant_bot.adapters.gateway import GatewayUnavailable, MerchantApi
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
