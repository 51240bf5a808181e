"""An aiogram middleware that hands every handler the chat's stored state (`chat`).

A message from a chat Telegram had refused before (the user blocked the bot, then came back)
makes that chat reachable again."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import TelegramObject

from autopay_store.merchant_bot import BotChat, MerchantBotStore


class ChatState(BaseMiddleware):
    def __init__(self, store: MerchantBotStore) -> None:
        self.store = store

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        event_chat = data.get("event_chat")
        if event_chat is None:
            return None  # updates without a chat (inline queries...) are not for this bot
        chat = await self.store.chat(event_chat.id)
        if chat.unreachable:
            await self.store.mark_reachable(chat.chat_id)
            chat = BotChat(chat.chat_id, chat.language, chat.merchant_id, chat.bot_key, None)
        data["chat"] = chat
        return await handler(event, data)
