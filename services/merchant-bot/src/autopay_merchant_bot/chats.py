"""The chats' stored state, as the bot works with it:

- `ChatState`, an aiogram middleware that hands every handler the chat's stored state (`chat`).
  A message from a chat Telegram had refused before (the user blocked the bot, then came back)
  makes that chat reachable again;
- `MerchantChats`, which chat a merchant is linked to, as alerts ask it for every event. Most
  events are of merchants with no linked chat: that answer is remembered for a few seconds, a
  found chat never (it is read each time, so an unlinked or relinked chat is never told)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from time import monotonic
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import TelegramObject

from autopay_runtime.cache import TtlCache
from autopay_store.merchant_bot import BotChat, MerchantBotStore

NO_CHAT_SIZE = 10_000
"""Merchants remembered with no chat at most (the least recently asked are forgotten)."""


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


class MerchantChats:
    """The chat of a merchant. "No chat" is remembered for `ttl_s` (0: never); a link made
    here forgets it at once, so the merchant's next alert reaches the new chat."""

    def __init__(
        self,
        store: MerchantBotStore,
        ttl_s: float,
        size: int = NO_CHAT_SIZE,
        clock: Callable[[], float] = monotonic,
    ) -> None:
        self.store = store
        self._no_chat: TtlCache[str, bool] = TtlCache(ttl_s, size, clock)
        """The merchants known to have no chat, least recently asked first."""
        self._links = 0

    async def of_merchant(self, merchant_id: str) -> BotChat | None:
        if self._no_chat.get(merchant_id, False):
            return None
        links = self._links
        chat = await self.store.chat_of_merchant(merchant_id)
        # A link made while Redis was asked may be newer than its answer: not remembered.
        if chat is None and links == self._links:
            self._no_chat.put(merchant_id, True)
        return chat

    async def link(self, chat_id: int, merchant_id: str, bot_key: str) -> None:
        """`MerchantBotStore.link`, then the merchant's "no chat" is forgotten (also when the
        link failed half way: the chat may be linked in Redis already)."""
        try:
            await self.store.link(chat_id, merchant_id, bot_key)
        finally:
            self._links += 1
            self._no_chat.discard(merchant_id)
