"""Sandbox cards: the cards a merchant connects with its test-mode key.

The sandbox is a world apart from the live one. A sandbox card is stored only in the
merchant's own hash (`Keys.sandbox_cards`), field `<card_last4>:<normalized gmail>` → card JSON:
it claims no mailbox, needs and stores no app password, and is never watched over IMAP. Its
`mailbox_id` is `sandbox_mailbox_id_for(merchant, gmail)`, so test orders and sandbox credits
live under an id no live mailbox has, and no other merchant's sandbox has either.
"""

from __future__ import annotations

import json

import redis.asyncio as aioredis

from autopay_contracts import is_card_last4, normalize_gmail, sandbox_mailbox_id_for
from autopay_store.accounts import Card
from autopay_store.journal import AccountJournal
from autopay_store.keys import Keys

MAX_SANDBOX_CARDS = 50
"""Per merchant: a leaked test key can fill no more than this."""


class TooManySandboxCards(Exception):
    """The merchant already has `MAX_SANDBOX_CARDS` sandbox cards."""


def _field(card_last4: str, gmail: str) -> str:
    return f"{card_last4}:{normalize_gmail(gmail)}"


class SandboxCards:
    def __init__(
        self, redis: aioredis.Redis, keys: Keys, journal: AccountJournal | None = None
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.journal = journal

    async def _record(self, merchant_id: str) -> None:
        if self.journal is not None:
            await self.journal.record(self.keys.card_sequence, self.keys.sandbox_cards(merchant_id))

    async def add(self, merchant_id: str, card_last4: str, gmail: str) -> Card:
        """Connect a sandbox card; connecting it again returns the same card."""
        if not is_card_last4(card_last4):
            raise ValueError("card_last4 must be exactly four ASCII digits")
        gmail = normalize_gmail(gmail)
        key = self.keys.sandbox_cards(merchant_id)
        found = await self.find(merchant_id, card_last4, gmail)
        if found is not None:
            return found
        if await self.redis.hlen(key) >= MAX_SANDBOX_CARDS:
            raise TooManySandboxCards(merchant_id)
        # From the live cards' sequence: a card id names one card of either world, so a test
        # key's DELETE of a live card's id can only ever be a 404.
        card_id = int(await self.redis.incr(self.keys.card_sequence))
        card = Card(
            card_id, merchant_id, card_last4, gmail, sandbox_mailbox_id_for(merchant_id, gmail)
        )
        if not await self.redis.hsetnx(key, _field(card_last4, gmail), json.dumps(card.__dict__)):
            found = await self.find(merchant_id, card_last4, gmail)  # a concurrent add won
            assert found is not None
            return found
        await self._record(merchant_id)
        return card

    async def find(self, merchant_id: str, card_last4: str, gmail: str) -> Card | None:
        raw = await self.redis.hget(self.keys.sandbox_cards(merchant_id), _field(card_last4, gmail))
        return Card(**json.loads(raw)) if raw else None

    async def list(self, merchant_id: str) -> list[Card]:
        raw = await self.redis.hvals(self.keys.sandbox_cards(merchant_id))
        return sorted((Card(**json.loads(v)) for v in raw), key=lambda c: c.card_id)

    async def remove(self, merchant_id: str, card_id: int) -> Card | None:
        for card in await self.list(merchant_id):
            if card.card_id == card_id:
                await self.redis.hdel(
                    self.keys.sandbox_cards(merchant_id), _field(card.card_last4, card.gmail)
                )
                await self._record(merchant_id)
                return card
        return None
