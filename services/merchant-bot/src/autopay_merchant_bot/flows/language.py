"""Flow: choose the bot's language (Uzbek by default, Russian, English)."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command
from aiogram.filters.callback_data import CallbackData
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message

from autopay_merchant_bot.context import BotContext
from autopay_merchant_bot.texts import LANGUAGES, say
from autopay_store.merchant_bot import BotChat

router = Router(name="language")

NAMES = {"uz": "🇺🇿 O'zbekcha", "ru": "🇷🇺 Русский", "en": "🇬🇧 English"}


class LanguagePress(CallbackData, prefix="lang"):
    code: str


def keyboard() -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=NAMES[code], callback_data=LanguagePress(code=code).pack()
                )
                for code in LANGUAGES
            ]
        ]
    )


@router.message(Command("language", "lang", "til", "язык"))
async def choose(message: Message, ctx: BotContext, chat: BotChat) -> None:
    await message.answer(say(ctx.language(chat), "choose_language"), reply_markup=keyboard())


@router.callback_query(LanguagePress.filter(F.code.in_(LANGUAGES)))
async def chosen(
    query: CallbackQuery, callback_data: LanguagePress, ctx: BotContext, chat: BotChat
) -> None:
    await ctx.store.set_language(chat.chat_id, callback_data.code)
    await query.answer()
    if query.message is not None:
        await query.message.answer(say(callback_data.code, "language_set"))
