"""Flow: a merchant joins. By an operator's invite code (`/start CODE`, or the code typed
after `/start`) or, when the bot is set to open registration, freely. The bot creates the
merchant through the admin API on the trial tariff, links the chat with a bot key of its own,
and shows the API key and webhook secret once, with the next steps."""

from __future__ import annotations

import html

from aiogram import F, Router
from aiogram.filters import Command, CommandObject, CommandStart, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import Message

from autopay_merchant_bot.adapters.gateway import GatewayRefused, GatewayUnavailable
from autopay_merchant_bot.context import BotContext
from autopay_merchant_bot.domain import looks_like_app_password
from autopay_merchant_bot.flows.common import unavailable
from autopay_merchant_bot.texts import Raw, say
from autopay_store.merchant_bot import BotChat

router = Router(name="onboarding")


class Joining(StatesGroup):
    invite = State()
    name = State()


def examples(api_url: str) -> dict[str, Raw]:
    """The original API's first call (create a payment), with this platform's address."""
    curl = (
        f"curl -X POST {api_url}/api/create-payment \\\n"
        '  -H "x-api-key: API_KEY" -H "Content-Type: application/json" \\\n'
        '  -d \'{"amount": 50037, "card_last4": "6412", "gmail": "karta@gmail.com"}\''
    )
    python = (
        "import random, requests\n"
        "unique_amount = 50000 + random.randint(1, 99)\n"
        "r = requests.post(\n"
        f'    "{api_url}/api/create-payment",\n'
        '    headers={"x-api-key": "API_KEY"},\n'
        '    json={"amount": unique_amount, "card_last4": "6412",\n'
        '          "gmail": "karta@gmail.com", "webhook_url": "https://botingiz.uz/webhook"},\n'
        ")\n"
        'order_id = r.json()["order_id"]'
    )

    return {"curl": Raw(html.escape(curl)), "python": Raw(html.escape(python))}


@router.message(CommandStart())
async def start(
    message: Message, command: CommandObject, state: FSMContext, ctx: BotContext, chat: BotChat
) -> None:
    language = ctx.language(chat)
    await state.clear()
    if chat.merchant_id:
        await message.answer(say(language, "welcome_back", merchant_id=chat.merchant_id))
        await message.answer(say(language, "menu"))
        return
    code = (command.args or "").strip() or None
    if ctx.settings.registration == "invite" and code is None:
        await state.set_state(Joining.invite)
        await message.answer(say(language, "ask_invite"))
        return
    await state.update_data(invite=code)
    await state.set_state(Joining.name)
    await message.answer(say(language, "ask_shop_name"))


@router.message(Joining.invite, F.text)
async def invite(message: Message, state: FSMContext, ctx: BotContext, chat: BotChat) -> None:
    await state.update_data(invite=(message.text or "").strip())
    await state.set_state(Joining.name)
    await message.answer(say(ctx.language(chat), "ask_shop_name"))


@router.message(Joining.name, F.text)
async def name(message: Message, state: FSMContext, ctx: BotContext, chat: BotChat) -> None:
    language = ctx.language(chat)
    shop = (message.text or "").strip()
    if not 1 <= len(shop) <= 64:
        await message.answer(say(language, "bad_shop_name"))
        return
    invite_code = (await state.get_data()).get("invite")
    try:
        created = await ctx.admin.create_merchant(
            shop, ctx.settings.trial_tariff or None, invite_code
        )
    except GatewayRefused as exc:
        if invite_code is not None and "invite" in exc.detail.lower():
            await state.set_state(Joining.invite)
            await message.answer(say(language, "invite_invalid"))
            return
        await unavailable(message, ctx, chat, exc)
        return
    except GatewayUnavailable as exc:
        await unavailable(message, ctx, chat, exc)
        return
    await state.clear()
    await ctx.chats.link(chat.chat_id, created["merchant_id"], created["bot_key"])
    await message.answer(
        say(
            language,
            "registered",
            name=shop,
            merchant_id=created["merchant_id"],
            tariff=ctx.settings.trial_tariff or "—",
            api_key=created["api_key"],
            webhook_secret=created["webhook_secret"],
        )
    )
    await message.answer(say(language, "next_steps", **examples(ctx.settings.shown_api_url)))
    await message.answer(say(language, "menu"))


@router.message(Command("help"))
async def help_(message: Message, ctx: BotContext, chat: BotChat) -> None:
    language = ctx.language(chat)
    await message.answer(say(language, "next_steps", **examples(ctx.settings.shown_api_url)))
    await message.answer(say(language, "menu"))


@router.message(StateFilter(None), F.text)
async def anything_else(message: Message, ctx: BotContext, chat: BotChat) -> None:
    """A message outside any flow. One that looks like an App Password (the user pasted it
    late, or the bot restarted in the middle of adding a card) is deleted at once."""
    language = ctx.language(chat)
    if looks_like_app_password(message.text or ""):
        await message.delete()
        await message.answer(say(language, "password_deleted"))
    await message.answer(say(language, "menu" if chat.merchant_id else "not_linked"))
