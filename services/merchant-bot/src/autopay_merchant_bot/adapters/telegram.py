"""Telegram through aiogram: every Bot API call passes the send queue.

Telegram allows a bot about 30 messages a second overall and about one a second per chat,
and answers 429 with `retry_after` past that. `SendQueue` is an aiogram request middleware:
messages wait for the bot-wide and the chat's token bucket (aiolimiter), a 429 waits the
`retry_after` Telegram names and tries again, a network or server error is retried with
backoff, all up to `attempts`. A chat that blocked the bot or no longer exists is recorded
through `on_unreachable` and the call raises `ChatUnreachable`: it is not retried, and alerts
skip that chat until its user writes again.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiogram import Bot
from aiogram.client.session.middlewares.base import (
    BaseRequestMiddleware,
    NextRequestMiddlewareType,
)
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.methods import Response, TelegramMethod
from aiolimiter import AsyncLimiter

from autopay_merchant_bot import metrics

log = structlog.get_logger("autopay_merchant_bot")

PACED_METHODS = frozenset(
    {"sendMessage", "editMessageText", "editMessageReplyMarkup", "sendPhoto", "sendDocument"}
)
UNREACHABLE_HINTS = ("chat not found", "user is deactivated", "bot was kicked")


class ChatUnreachable(Exception):
    """Telegram refuses messages to this chat (blocked, deleted): recorded, not retried."""

    def __init__(self, chat_id: int | str, reason: str) -> None:
        super().__init__(f"chat {chat_id}: {reason}")
        self.chat_id = chat_id
        self.reason = reason


def _chat_of(method: TelegramMethod[Any]) -> int | str | None:
    return getattr(method, "chat_id", None)


class SendQueue(BaseRequestMiddleware):
    def __init__(
        self,
        *,
        global_per_s: float,
        chat_per_s: float,
        attempts: int,
        on_unreachable: Callable[[int, str], Awaitable[None]] | None = None,
        max_backoff_s: float = 30.0,
        chats_tracked: int = 10_000,
    ) -> None:
        self.global_limit = AsyncLimiter(max(1.0, global_per_s), 1.0)
        self.chat_per_s = chat_per_s
        self.attempts = attempts
        self.on_unreachable = on_unreachable
        self.max_backoff_s = max_backoff_s
        self._chats: OrderedDict[int | str, AsyncLimiter] = OrderedDict()
        self._chats_tracked = chats_tracked

    def _chat_limit(self, chat_id: int | str) -> AsyncLimiter:
        limiter = self._chats.pop(chat_id, None)
        if limiter is None:
            # a short burst (three messages of one reply) is fine; the rate holds over time
            limiter = AsyncLimiter(3, 3 / self.chat_per_s)
        self._chats[chat_id] = limiter
        while len(self._chats) > self._chats_tracked:
            self._chats.popitem(last=False)
        return limiter

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[Any],
        bot: Bot,
        method: TelegramMethod[Any],
    ) -> Response[Any]:
        name = method.__api_method__
        chat_id = _chat_of(method)
        backoff = 0.5
        for attempt in range(1, self.attempts + 1):
            if name in PACED_METHODS:
                await self.global_limit.acquire()
                if chat_id is not None:
                    await self._chat_limit(chat_id).acquire()
            try:
                response = await make_request(bot, method)
            except TelegramRetryAfter as exc:
                if attempt == self.attempts:
                    metrics.TELEGRAM_CALLS.labels("failed").inc()
                    raise
                metrics.TELEGRAM_CALLS.labels("retried").inc()
                await asyncio.sleep(min(float(exc.retry_after), self.max_backoff_s))
                continue
            except TelegramForbiddenError as exc:
                await self._unreachable(chat_id, exc.message)
                raise ChatUnreachable(chat_id or "?", exc.message) from exc
            except TelegramBadRequest as exc:
                if chat_id is not None and any(h in exc.message.lower() for h in UNREACHABLE_HINTS):
                    await self._unreachable(chat_id, exc.message)
                    raise ChatUnreachable(chat_id, exc.message) from exc
                metrics.TELEGRAM_CALLS.labels("failed").inc()
                raise
            except (TelegramNetworkError, TelegramServerError):
                if attempt == self.attempts:
                    metrics.TELEGRAM_CALLS.labels("failed").inc()
                    raise
                metrics.TELEGRAM_CALLS.labels("retried").inc()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)
                continue
            metrics.TELEGRAM_CALLS.labels("ok").inc()
            return response
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    async def _unreachable(self, chat_id: int | str | None, reason: str) -> None:
        metrics.TELEGRAM_CALLS.labels("unreachable").inc()
        log.warning("telegram refuses the chat", chat_id=chat_id, reason=reason[:120])
        if (
            chat_id is not None
            and self.on_unreachable is not None
            and str(chat_id).lstrip("-").isdigit()
        ):
            await self.on_unreachable(int(chat_id), reason)
