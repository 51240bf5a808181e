"""Flow: connect a card (last 4 digits, Gmail address, App Password), list the cards with
their mailbox health, remove one.

The App Password travels in a chat message: the bot deletes that message before it even
checks the login, whatever the check then says, and tells the user it did."""

from __future__ import annotations

import contextlib

from aiogram import F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message

from autopay_contracts import is_card_last4
from autopay_merchant_bot.adapters.gateway import (
    GatewayRefused,
    GatewayUnavailable,
    MerchantApi,
)
from autopay_merchant_bot.context import BotContext
from autopay_merchant_bot.domain import looks_like_address
from autopay_merchant_bot.flows.common import linked_api, press_through, unavailable
from autopay_merchant_bot.texts import app_password_steps, say
from autopay_store.merchant_bot import BotChat

router = Router(name="cards")

HEALTH = {"connected": "🟢", "auth_failed": "🔴", "sandbox": "🧪"}


class AddingCard(StatesGroup):
    card_last4 = State()
    gmail = State()
    app_password = State()


class RemovePress(CallbackData, prefix="rm"):
    card_id: int
    card_last4: str


@router.message(Command("addcard"))
async def add_card(message: Message, state: FSMContext, ctx: BotContext, chat: BotChat) -> None:
    if await linked_api(message, ctx, chat) is None:
        return
    await state.set_state(AddingCard.card_last4)
    await message.answer(say(ctx.language(chat), "ask_card_last4"))


@router.message(AddingCard.card_last4, F.text)
async def card_last4(message: Message, state: FSMContext, ctx: BotContext, chat: BotChat) -> None:
    digits = (message.text or "").strip()
    if not is_card_last4(digits):
        await message.answer(say(ctx.language(chat), "bad_card_last4"))
        return
    await state.update_data(card_last4=digits)
    await state.set_state(AddingCard.gmail)
    await message.answer(say(ctx.language(chat), "ask_gmail"))


@router.message(AddingCard.gmail, F.text)
async def gmail(message: Message, state: FSMContext, ctx: BotContext, chat: BotChat) -> None:
    language = ctx.language(chat)
    address = (message.text or "").strip()
    if not looks_like_address(address):
        await message.answer(say(language, "bad_gmail"))
        return
    await state.update_data(gmail=address)
    await state.set_state(AddingCard.app_password)
    await message.answer(say(language, "ask_app_password", steps=app_password_steps(language)))


@router.message(AddingCard.app_password, F.text)
async def app_password(message: Message, state: FSMContext, ctx: BotContext, chat: BotChat) -> None:
    language = ctx.language(chat)
    password = (message.text or "").strip()
    # First of all: the password leaves the chat, whatever happens next.
    with contextlib.suppress(TelegramBadRequest):
        await message.delete()
    data = await state.get_data()
    await state.clear()
    await message.answer(say(language, "password_deleted"))
    api = await linked_api(message, ctx, chat)
    if api is None:
        return
    await message.answer(say(language, "checking_login"))
    try:
        card = await api.add_card(data["card_last4"], data["gmail"], password)
    except GatewayRefused as exc:
        await message.answer(say(language, "card_failed", detail=exc.detail))
        return
    except GatewayUnavailable as exc:
        await unavailable(message, ctx, chat, exc)
        return
    await message.answer(
        say(
            language,
            "card_added",
            card_last4=card["card_last4"],
            gmail=card["gmail"],
            card_id=card["id"],
        )
    )


@router.message(Command("cards"))
async def list_cards(message: Message, ctx: BotContext, chat: BotChat) -> None:
    api = await linked_api(message, ctx, chat)
    if api is None:
        return
    language = ctx.language(chat)
    try:
        cards = await api.my_cards()
    except (GatewayRefused, GatewayUnavailable) as exc:
        await unavailable(message, ctx, chat, exc)
        return
    if not cards:
        await message.answer(say(language, "no_cards"))
        return
    lines = [say(language, "cards_header")]
    buttons = []
    for card in cards:
        lines.append(
            say(
                language,
                "card_line",
                health=HEALTH.get(card.get("status", ""), "🟠"),
                card_last4=card["card_last4"],
                gmail=card["gmail"],
                card_id=card["id"],
                last_mail=card.get("last_mail_at") or say(language, "never"),
            )
        )
        buttons.append(
            [
                InlineKeyboardButton(
                    text=say(language, "remove_button", card_last4=card["card_last4"]),
                    callback_data=RemovePress(
                        card_id=card["id"], card_last4=card["card_last4"]
                    ).pack(),
                )
            ]
        )
    await message.answer(
        "\n".join(lines), reply_markup=InlineKeyboardMarkup(inline_keyboard=buttons)
    )


@router.callback_query(RemovePress.filter())
async def remove_card(
    query: CallbackQuery, callback_data: RemovePress, ctx: BotContext, chat: BotChat
) -> None:
    async def remove(api: MerchantApi) -> object:
        return await api.remove_card(callback_data.card_id)

    await press_through(
        query,
        ctx,
        chat,
        remove,
        "card_removed",
        refused="error",
        card_last4=callback_data.card_last4,
        card_id=callback_data.card_id,
    )
