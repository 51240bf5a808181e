"""Flow: rotate the live API key (after a confirmation), rotate the webhook signing secret,
and issue a sandbox (test-mode) key. The bot's own key for the merchant is not touched."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command
from aiogram.filters.callback_data import CallbackData
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message

from autopay_merchant_bot.adapters.gateway import GatewayRefused, GatewayUnavailable
from autopay_merchant_bot.context import BotContext
from autopay_merchant_bot.flows.common import linked_api, unavailable
from autopay_merchant_bot.texts import say
from autopay_store.merchant_bot import BotChat

router = Router(name="keys")


class RotatePress(CallbackData, prefix="key"):
    mode: str  # "live"


@router.message(Command("key"))
async def key(message: Message, ctx: BotContext, chat: BotChat) -> None:
    if await linked_api(message, ctx, chat) is None:
        return
    language = ctx.language(chat)
    button = InlineKeyboardButton(
        text=say(language, "yes_rotate"), callback_data=RotatePress(mode="live").pack()
    )
    await message.answer(
        say(language, "key_confirm"),
        reply_markup=InlineKeyboardMarkup(inline_keyboard=[[button]]),
    )


@router.callback_query(RotatePress.filter())
async def rotate(query: CallbackQuery, ctx: BotContext, chat: BotChat) -> None:
    await query.answer()
    if chat.merchant_id is None or not isinstance(query.message, Message):
        return
    try:
        api_key = await ctx.admin.rotate_key(chat.merchant_id, "live")
    except (GatewayRefused, GatewayUnavailable) as exc:
        await unavailable(query.message, ctx, chat, exc)
        return
    await query.message.edit_reply_markup(reply_markup=None)
    await query.message.answer(say(ctx.language(chat), "key_rotated", api_key=api_key))


@router.message(Command("sandbox"))
async def sandbox(message: Message, ctx: BotContext, chat: BotChat) -> None:
    if await linked_api(message, ctx, chat) is None or chat.merchant_id is None:
        return
    try:
        api_key = await ctx.admin.rotate_key(chat.merchant_id, "test")
    except (GatewayRefused, GatewayUnavailable) as exc:
        await unavailable(message, ctx, chat, exc)
        return
    await message.answer(say(ctx.language(chat), "sandbox_key", api_key=api_key))


@router.message(Command("secret"))
async def secret(message: Message, ctx: BotContext, chat: BotChat) -> None:
    api = await linked_api(message, ctx, chat)
    if api is None:
        return
    try:
        rotated = await api.rotate_webhook_secret()
    except (GatewayRefused, GatewayUnavailable) as exc:
        await unavailable(message, ctx, chat, exc)
        return
    await message.answer(
        say(ctx.language(chat), "secret_rotated", secret=rotated["webhook_secret"])
    )
