"""What every handler and consumer of the bot works with: settings, its store (and the chats of
merchants in front of it), the gateway's APIs and a way to tell a merchant something."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
import structlog
from aiogram import Bot
from aiogram.types import InlineKeyboardMarkup, Message

from autopay_merchant_bot import metrics
from autopay_merchant_bot.adapters.gateway import AdminApi, MerchantApi
from autopay_merchant_bot.adapters.telegram import ChatUnreachable
from autopay_merchant_bot.chats import MerchantChats
from autopay_merchant_bot.settings import MerchantBotSettings
from autopay_merchant_bot.texts import say
from autopay_store.merchant_bot import BotChat, MerchantBotStore

log = structlog.get_logger("autopay_merchant_bot")


@dataclass
class BotContext:
    settings: MerchantBotSettings
    store: MerchantBotStore
    admin: AdminApi
    http: httpx.AsyncClient
    bot: Bot
    chats: MerchantChats = field(init=False)
    """Which chat is a merchant's: alerts look it up here, and link chats through it."""

    def __post_init__(self) -> None:
        self.chats = MerchantChats(self.store, self.settings.no_chat_ttl_s)

    def language(self, chat: BotChat) -> str:
        return chat.language or self.settings.default_language

    def merchant_api(self, chat: BotChat) -> MerchantApi | None:
        if not chat.bot_key:
            return None
        return MerchantApi(
            self.http, self.settings.gateway_url.rstrip("/"), chat.bot_key, self.language(chat)
        )

    def operator_api(self) -> MerchantApi | None:
        key = self.settings.operator_api_key.get_secret_value()
        if not (key and self.settings.operator_card_last4 and self.settings.operator_gmail):
            return None
        return MerchantApi(self.http, self.settings.gateway_url.rstrip("/"), key, "en")

    async def tell(
        self,
        chat: BotChat,
        key: str,
        /,
        reply_markup: InlineKeyboardMarkup | None = None,
        **values: Any,
    ) -> Message | None:
        """Send the text `key` to the chat in its language; None when Telegram refuses the
        chat (recorded by the send queue) or it was recorded unreachable before."""
        if chat.unreachable:
            log.info("alert skipped: chat unreachable", chat_id=chat.chat_id, kind=key)
            metrics.alert(key, "unreachable")
            return None
        try:
            sent = await self.bot.send_message(
                chat.chat_id, say(self.language(chat), key, **values), reply_markup=reply_markup
            )
        except ChatUnreachable:
            metrics.alert(key, "unreachable")
            return None
        metrics.alert(key, "sent")
        return sent
