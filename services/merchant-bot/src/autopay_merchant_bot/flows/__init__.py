"""What a merchant does in the chat, one flow per module, each an aiogram `Router`.

Handlers get the `BotContext` as `ctx` and the chat's stored state as `chat` (see
`autopay_merchant_bot.chats`); they read and change things only through the gateway."""

from aiogram import Router

from autopay_merchant_bot.flows import cards, keys, language, matching, onboarding, subscription


def routers() -> list[Router]:
    # onboarding last: its catch-all for messages outside any flow must not shadow the others
    return [
        language.router,
        cards.router,
        keys.router,
        subscription.router,
        matching.router,
        onboarding.router,
    ]
