"""The send queue against the fake Bot API: Telegram's 429 is waited out and retried, a chat
that blocked the bot or does not exist is recorded and not retried."""

from __future__ import annotations

import time

import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer

from autopay_merchant_bot.adapters.telegram import ChatUnreachable, SendQueue
from autopay_testing.telegram import FakeTelegram


@pytest.fixture
async def fake():
    async with FakeTelegram() as server:
        yield server


def _bot(fake: FakeTelegram, queue: SendQueue) -> Bot:
    session = AiohttpSession(api=TelegramAPIServer.from_base(fake.url))
    session.middleware(queue)
    return Bot("1000002:send-queue-test", session=session)


async def test_flood_control_is_waited_out_and_the_message_still_goes(fake):
    fake.add_chat(10)
    fake.flood(10, retry_after=1, times=2)
    bot = _bot(fake, SendQueue(global_per_s=30, chat_per_s=1, attempts=5))
    started = time.monotonic()
    try:
        await bot.send_message(10, "hello")
    finally:
        await bot.session.close()
    assert time.monotonic() - started >= 2.0  # two retry_after waits of 1 s
    assert [m.text for m in fake.bot_messages(10)] == ["hello"]
    assert len(fake.calls("sendMessage")) == 3


async def test_flood_past_the_attempts_is_an_error_not_a_loop(fake):
    from aiogram.exceptions import TelegramRetryAfter

    fake.add_chat(11)
    fake.flood(11, retry_after=1, times=10)
    bot = _bot(fake, SendQueue(global_per_s=30, chat_per_s=1, attempts=2))
    try:
        with pytest.raises(TelegramRetryAfter):
            await bot.send_message(11, "hello")
    finally:
        await bot.session.close()
    assert len(fake.calls("sendMessage")) == 2


async def test_a_blocked_or_unknown_chat_is_recorded_once_and_not_retried(fake):
    fake.add_chat(12)
    fake.block(12)
    recorded: list[tuple[int, str]] = []

    async def on_unreachable(chat_id: int, reason: str) -> None:
        recorded.append((chat_id, reason))

    bot = _bot(
        fake, SendQueue(global_per_s=30, chat_per_s=1, attempts=5, on_unreachable=on_unreachable)
    )
    try:
        with pytest.raises(ChatUnreachable):
            await bot.send_message(12, "hello")
        with pytest.raises(ChatUnreachable):
            await bot.send_message(999, "nobody")  # never seen: chat not found
    finally:
        await bot.session.close()
    assert [chat for chat, _ in recorded] == [12, 999]
    assert "blocked" in recorded[0][1]
    assert len(fake.calls("sendMessage")) == 2  # one try each


async def test_messages_to_one_chat_are_paced(fake):
    fake.add_chat(13)
    bot = _bot(fake, SendQueue(global_per_s=30, chat_per_s=2, attempts=1))
    started = time.monotonic()
    try:
        for i in range(5):  # a burst of 3 passes, then 2 per second
            await bot.send_message(13, f"m{i}")
    finally:
        await bot.session.close()
    assert time.monotonic() - started >= 0.9
    assert [m.text for m in fake.bot_messages(13)] == [f"m{i}" for i in range(5)]
