"""The fake Telegram Bot API (autopay_testing.telegram) driven by a real aiogram 3 bot."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from collections.abc import AsyncIterator

import httpx
import pytest
from aiogram import Bot, Dispatcher, F
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramUnauthorizedError,
)
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.types import (
    BotCommand,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    Message,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
)

from autopay_testing.telegram import FakeTelegram, TelegramControl

TOKEN = "123456:TEST-token"
CHAT = 7001


def make_bot(url: str, token: str = TOKEN) -> Bot:
    return Bot(token, session=AiohttpSession(api=TelegramAPIServer.from_base(url)))


def pay_keyboard() -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [InlineKeyboardButton(text="Pay", callback_data="pay:1")],
            [InlineKeyboardButton(text="Help", url="https://example.com/help")],
        ]
    )


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(token=TOKEN) as fake:
        yield fake


@pytest.fixture
async def bot(tg: FakeTelegram) -> AsyncIterator[Bot]:
    bot = make_bot(tg.url)
    yield bot
    await bot.session.close()


@contextlib.asynccontextmanager
async def polling(dp: Dispatcher, bot: Bot, tg: FakeTelegram) -> AsyncIterator[None]:
    task = asyncio.create_task(
        dp.start_polling(bot, handle_signals=False, close_bot_session=False, polling_timeout=5)
    )
    try:
        await tg.wait_for_call("getUpdates", timeout=5)
        yield
    finally:
        with contextlib.suppress(RuntimeError):
            await dp.stop_polling()
        await asyncio.wait_for(task, 5)


def bot_dispatcher() -> Dispatcher:
    dp = Dispatcher()

    @dp.message(CommandStart())
    async def start(message: Message, command: CommandObject) -> None:
        await message.answer(
            f"Hello {message.from_user.first_name}, ref={command.args}",
            reply_markup=pay_keyboard(),
        )

    @dp.message(Command("forget"))
    async def forget(message: Message) -> None:
        await message.delete()
        await message.answer("Forgotten", reply_markup=ReplyKeyboardRemove())

    @dp.callback_query(F.data.startswith("pay:"))
    async def pay(callback: CallbackQuery) -> None:
        await callback.answer("Paid!", show_alert=True)
        await callback.message.edit_text(
            f"<b>Paid</b> invoice {callback.data[4:]}", parse_mode="HTML"
        )

    return dp


async def test_start_command_is_answered(tg: FakeTelegram, bot: Bot) -> None:
    async with polling(bot_dispatcher(), bot, tg):
        sent = tg.user_message(CHAT, "/start ref_1", first_name="Aziz")
        reply = await tg.wait_for_bot_message(CHAT, after=sent)

    assert sent == 1
    assert reply.message_id == 2
    assert reply.from_bot
    assert reply.text == "Hello Aziz, ref=ref_1"
    assert reply.button_texts == ["Pay", "Help"]
    assert reply.callback_data == ["pay:1"]
    assert reply.callback_for("Pay") == "pay:1"
    assert [m.from_bot for m in tg.messages(CHAT)] == [False, True]
    assert tg.messages(CHAT)[0].entities == [{"type": "bot_command", "offset": 0, "length": 6}]
    assert tg.calls("getMe") and tg.tokens == {TOKEN}
    (send,) = tg.calls("sendMessage")
    assert send.params["chat_id"] == CHAT
    assert send.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "pay:1"


async def test_button_press_reaches_callback_handler(tg: FakeTelegram, bot: Bot) -> None:
    async with polling(bot_dispatcher(), bot, tg):
        menu = await tg.wait_for_bot_message(CHAT, after=tg.user_message(CHAT, "/start"))
        query_id = tg.press(CHAT, menu.message_id, "pay:1")
        edited = await tg.wait_for_bot_message(CHAT, lambda m: "Paid" in (m.text or ""))
        await tg.wait_for_call("answerCallbackQuery")
        # the next getUpdates' offset confirms what the bot received
        await tg.wait_until(lambda: not tg.pending_updates, what="updates confirmed")

    assert edited.message_id == menu.message_id
    assert edited.text == "Paid invoice 1"
    assert edited.raw_text == "<b>Paid</b> invoice 1"
    assert edited.edits == 1 and edited.edit_date is not None
    assert edited.reply_markup is None, "an edit without reply_markup drops the keyboard"
    (answer,) = tg.answered_callbacks
    assert (answer.callback_query_id, answer.text, answer.show_alert) == (query_id, "Paid!", True)
    assert (answer.chat_id, answer.message_id, answer.data) == (CHAT, menu.message_id, "pay:1")
    with pytest.raises(ValueError, match="no button"):
        tg.press(CHAT, menu.message_id, "pay:1")  # the keyboard is gone


async def test_deleting_the_users_message(tg: FakeTelegram, bot: Bot) -> None:
    async with polling(bot_dispatcher(), bot, tg):
        sent = tg.user_message(CHAT, "/forget")
        await tg.wait_for_bot_message(CHAT, lambda m: m.text == "Forgotten")

    (delete,) = tg.calls("deleteMessage")
    assert delete.ok and delete.params == {"chat_id": CHAT, "message_id": sent}
    assert tg.deleted_ids(CHAT) == [sent]
    assert sent not in [m.message_id for m in tg.messages(CHAT)]
    assert tg.message(CHAT, sent).deleted
    with pytest.raises(TelegramBadRequest, match="message to delete not found"):
        await bot.delete_message(CHAT, sent)
    with pytest.raises(TelegramBadRequest, match="message to delete not found"):
        await bot.delete_message(CHAT, 999)


async def test_reply_keyboard_and_commands(tg: FakeTelegram, bot: Bot) -> None:
    tg.add_chat(CHAT)
    keyboard = ReplyKeyboardMarkup(keyboard=[[KeyboardButton(text="My cards")]])
    await bot.send_message(CHAT, "Menu", reply_markup=keyboard)
    assert tg.reply_keyboard(CHAT)["keyboard"] == [[{"text": "My cards"}]]
    await bot.send_message(CHAT, "Bye", reply_markup=ReplyKeyboardRemove())
    assert tg.reply_keyboard(CHAT) is None
    assert tg.bot_messages(CHAT)[1].reply_markup == {"remove_keyboard": True}

    assert await bot.set_my_commands([BotCommand(command="start", description="Start")])
    assert tg.commands() == [{"command": "start", "description": "Start"}]
    assert [c.command for c in await bot.get_my_commands()] == ["start"]
    assert await bot.delete_webhook(drop_pending_updates=True)
    chat = await bot.get_chat(CHAT)
    assert chat.id == CHAT and chat.type == "private"


async def test_blocked_and_unknown_chats(tg: FakeTelegram, bot: Bot) -> None:
    tg.user_message(CHAT, "hi")
    sent = await bot.send_message(CHAT, "one", reply_markup=pay_keyboard())
    tg.block(CHAT)

    with pytest.raises(TelegramForbiddenError, match="bot was blocked by the user"):
        await bot.send_message(CHAT, "two")
    with pytest.raises(TelegramForbiddenError):
        await bot.edit_message_text("one!", chat_id=CHAT, message_id=sent.message_id)
    with pytest.raises(TelegramBadRequest, match="chat not found"):
        await bot.send_message(CHAT + 1, "nobody there")
    assert [c.error_code for c in tg.calls("sendMessage")] == [None, 403, 400]
    assert "my_chat_member" in tg.pending_updates[-1]

    tg.user_message(CHAT, "/start")  # writing to the bot again unblocks it
    assert not tg.is_blocked(CHAT)
    await bot.send_message(CHAT, "welcome back")


async def test_flood_control(tg: FakeTelegram, bot: Bot) -> None:
    tg.add_chat(CHAT)
    tg.flood(CHAT, retry_after=7, times=2)
    for _ in range(2):
        with pytest.raises(TelegramRetryAfter) as raised:
            await bot.send_message(CHAT, "hurry")
        assert raised.value.retry_after == 7
    await bot.send_message(CHAT, "finally")
    assert [m.text for m in tg.bot_messages(CHAT)] == ["finally"]
    assert [c.error_code for c in tg.calls("sendMessage")] == [429, 429, None]


async def test_telegram_checks(tg: FakeTelegram, bot: Bot) -> None:
    tg.add_chat(CHAT)
    with pytest.raises(TelegramBadRequest, match="can't parse entities"):
        await bot.send_message(CHAT, "Paid by <Ali>", parse_mode="HTML")
    with pytest.raises(TelegramBadRequest, match="message is too long"):
        await bot.send_message(CHAT, "x" * 4097)
    too_long = InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text="x", callback_data="d" * 65)]]
    )
    with pytest.raises(TelegramBadRequest, match="BUTTON_DATA_INVALID"):
        await bot.send_message(CHAT, "kb", reply_markup=too_long)
    sent = await bot.send_message(CHAT, "Paid by &lt;Ali&gt;", parse_mode="HTML")
    assert sent.text == "Paid by <Ali>"
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_text(
            "Paid by &lt;Ali&gt;", chat_id=CHAT, message_id=sent.message_id, parse_mode="HTML"
        )
    edited = await bot.edit_message_reply_markup(
        chat_id=CHAT, message_id=sent.message_id, reply_markup=pay_keyboard()
    )
    assert edited.reply_markup.inline_keyboard[0][0].callback_data == "pay:1"
    with pytest.raises(TelegramBadRequest, match="message to edit not found"):
        await bot.edit_message_text("?", chat_id=CHAT, message_id=999)
    with pytest.raises(TelegramBadRequest, match="query is too old"):
        await bot.answer_callback_query("12345")
    with pytest.raises(TelegramNotFound, match="method not found"):
        await bot.send_dice(CHAT)
    assert tg.calls("sendDice")[0].error_code == 404
    async with make_bot(tg.url, "999:other") as stranger:
        with pytest.raises(TelegramUnauthorizedError):
            await stranger.get_me()


async def test_get_updates_protocol(tg: FakeTelegram) -> None:
    async with httpx.AsyncClient(base_url=f"{tg.url}/bot{TOKEN}") as http:

        async def get_updates(**params: object) -> list[dict]:
            data = {k: json.dumps(v) for k, v in params.items()}
            body = (await http.post("/getUpdates", data=data, timeout=10)).json()
            assert body["ok"], body
            return body["result"]

        first = tg.user_message(CHAT, "one")
        tg.user_message(CHAT, "two")
        batch = await get_updates(limit=1)
        assert [u["message"]["message_id"] for u in batch] == [first]
        again = await get_updates()
        assert [u["message"]["text"] for u in again] == ["one", "two"]  # nothing confirmed yet
        assert await get_updates(offset=again[-1]["update_id"] + 1) == []
        assert tg.pending_updates == []

        poll = asyncio.create_task(get_updates(timeout=5, allowed_updates=["callback_query"]))
        await asyncio.sleep(0.05)
        tg.user_message(CHAT, "filtered out")
        await asyncio.sleep(0.05)
        assert not poll.done()
        await tg.wait_until(lambda: tg.dropped_updates)
        tg.add_chat(CHAT)
        async with make_bot(tg.url) as bot:
            sent = await bot.send_message(CHAT, "menu", reply_markup=pay_keyboard())
        tg.press(CHAT, sent.message_id, "pay:1")
        (update,) = await asyncio.wait_for(poll, 5)
        assert update["callback_query"]["data"] == "pay:1"
        assert update["callback_query"]["message"]["text"] == "menu"
        assert await get_updates(timeout=0) == [update]  # still unconfirmed; short poll


async def test_wait_for_bot_message_timeout_shows_transcript(tg: FakeTelegram) -> None:
    tg.user_message(CHAT, "anyone?")
    with pytest.raises(
        AssertionError, match=r"(?s)no bot message in chat 7001.*#1 user: 'anyone\?'"
    ):
        await tg.wait_for_bot_message(CHAT, timeout=0.1)


@pytest.fixture
def fake_process() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "autopay_testing.telegram", "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        yield proc, json.loads(line)["url"]
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()


async def test_control_api_out_of_process(fake_process: tuple[subprocess.Popen, str]) -> None:
    proc, url = fake_process
    bot = make_bot(url)
    try:
        with TelegramControl(url) as control:
            sent = control.message(CHAT, "/start x", first_name="Dilnoza")
            (update,) = await bot.get_updates()
            assert update.message.text == "/start x"
            assert update.message.from_user.first_name == "Dilnoza"

            reply = asyncio.create_task(
                asyncio.to_thread(control.wait_for_bot_message, CHAT, None, 5.0, sent)
            )
            await asyncio.sleep(0.1)
            menu = await bot.send_message(CHAT, "Menu", reply_markup=pay_keyboard())
            found = await reply
            assert (found.message_id, found.text, found.callback_data) == (2, "Menu", ["pay:1"])

            query_id = control.press(CHAT, menu.message_id, "pay:1")
            updates = await bot.get_updates(offset=update.update_id + 1)
            assert updates[0].callback_query.id == query_id
            await bot.answer_callback_query(query_id, text="ok")
            assert control.answered_callbacks()[0].text == "ok"
            with pytest.raises(ValueError, match="no button"):
                control.press(CHAT, menu.message_id, "nope")

            await bot.delete_message(CHAT, sent)
            assert control.deleted(CHAT) == [sent]
            assert [m.message_id for m in control.messages(CHAT)] == [menu.message_id]

            control.block(CHAT)
            with pytest.raises(TelegramForbiddenError):
                await bot.send_message(CHAT, "still there?")
            control.block(CHAT, False)
            control.flood(CHAT, retry_after=3)
            with pytest.raises(TelegramRetryAfter):
                await bot.send_message(CHAT, "flood")

            assert [c.method for c in control.calls("sendMessage")] == ["sendMessage"] * 3
            assert {c.method for c in control.calls()} >= {"getUpdates", "deleteMessage"}
            with pytest.raises(AssertionError, match="no bot message"):
                control.wait_for_bot_message(CHAT, lambda m: m.text == "never", timeout=0.2)

            raw = httpx.get(f"{url}/control/chats/{CHAT}/messages").json()
            assert raw["deleted"] == [sent] and raw["messages"][0]["from_bot"] is True
    finally:
        await bot.session.close()
    proc.terminate()
    assert proc.wait(10) == 0, "SIGTERM stops the server cleanly"
