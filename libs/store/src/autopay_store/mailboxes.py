"""Mailbox ownership: a mailbox (its normalized address) belongs to one merchant.

One hash per mailbox, `Keys.mailbox_owner(mailbox_id)`:
- `merchant_id`: the owner, the first merchant that connected a card on the mailbox;
- `gmail`: the normalized address;
- `card:<last4>`: `<merchant_id>:<card_id>` of each card connected on the mailbox;
- `aliases`: JSON list of the other addresses (normalized) the owner declared deliver to it;
- `app_password`: the encrypted app password;
- `disputed`: merchant ids (space separated) when state written before ownership existed had
  cards of several merchants on this mailbox. Then nobody owns it: nobody adds a card or changes
  its settings until an operator settles it (removing the cards of all but one merchant does).

Each change is one Lua script on that one key: two merchants racing for a mailbox cannot both
win, and removing its last card releases it and drops its password in the same step.

Mailboxes connected before this record existed have only card-owner keys. Until the mailbox
migration has run (`autopay_store.migrations`), the first claim or release of such a mailbox
adopts them: it scans the mailbox's card-owner keys and writes the record they describe.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal

import redis.asyncio as aioredis

from autopay_store import scripts
from autopay_store.keys import Keys, glob_escape
from autopay_store.replies import maybe_text, text_hash

MIGRATION = "mailbox-owners"
"""The migration after which every mailbox with cards has its record (no adoption needed)."""

Verdict = Literal["ok", "card_taken", "mailbox_taken"]


@dataclass(frozen=True)
class CardSlot:
    merchant_id: str
    card_id: int


@dataclass(frozen=True)
class MailboxOwnership:
    mailbox_id: str
    gmail: str
    owner: str | None
    """None while disputed."""
    cards: dict[str, CardSlot] = field(default_factory=dict)
    """last4 → the card's merchant and id."""
    aliases: tuple[str, ...] = ()
    password_token: str | None = None
    disputed: tuple[str, ...] = ()


def _slot(value: str) -> CardSlot:
    merchant_id, _, card_id = value.rpartition(":")
    return CardSlot(merchant_id, int(card_id))


def _ownership(mailbox_id: str, data: dict[str, str]) -> MailboxOwnership:
    return MailboxOwnership(
        mailbox_id=mailbox_id,
        gmail=data.get("gmail", ""),
        owner=data.get("merchant_id") or None,
        cards={k[5:]: _slot(v) for k, v in sorted(data.items()) if k.startswith("card:")},
        aliases=tuple(json.loads(data.get("aliases") or "[]")),
        password_token=data.get("app_password") or None,
        disputed=tuple((data.get("disputed") or "").split()),
    )


class MailboxOwners:
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._claim = scripts.register(redis, "mailbox_claim")
        self._release = scripts.register(redis, "mailbox_release")
        self._merge = scripts.register(redis, "mailbox_merge")

    async def get(self, mailbox_id: str) -> MailboxOwnership | None:
        data = text_hash(await self.redis.hgetall(self.keys.mailbox_owner(mailbox_id)))
        return _ownership(mailbox_id, data) if data else None

    async def owners(self, mailbox_ids: list[str]) -> dict[str, str | None]:
        """The merchant that owns each mailbox (None: nobody, or disputed), in one round trip."""
        unique = list(dict.fromkeys(mailbox_ids))
        async with self.redis.pipeline(transaction=False) as pipe:
            for mailbox_id in unique:
                pipe.hmget(self.keys.mailbox_owner(mailbox_id), "merchant_id", "disputed")
            found = await pipe.execute()
        return {
            mailbox_id: (owner if owner and not disputed else None)
            for mailbox_id, (owner, disputed) in zip(unique, found, strict=True)
        }

    async def current(self, mailbox_id: str, gmail: str) -> MailboxOwnership | None:
        """`get`, after adopting the mailbox's state written before ownership existed."""
        await self._adopt_unless_migrated(mailbox_id, gmail)
        return await self.get(mailbox_id)

    async def claim(
        self,
        mailbox_id: str,
        gmail: str,
        merchant_id: str,
        card_last4: str,
        *,
        password_token: str | None = None,
        aliases: tuple[str, ...] | None = None,
    ) -> tuple[Verdict, int | None]:
        """Connect `card_last4` on the mailbox for `merchant_id`: `("ok", card id)` (the same id
        when it was connected before), or `card_taken` / `mailbox_taken` when the card or the
        mailbox is another merchant's. Only the owner's call stores a password or aliases."""
        record = self.keys.mailbox_owner(mailbox_id)
        await self._adopt_unless_migrated(mailbox_id, gmail)
        new_id = ""
        if await self.redis.hget(record, f"card:{card_last4}") is None:
            new_id = str(await self.redis.incr(self.keys.card_sequence))
        args = [
            merchant_id,
            gmail,
            card_last4,
            new_id,
            password_token or "",
            "" if aliases is None else json.dumps(list(aliases)),
        ]
        result = await self._claim(keys=[record], args=args)
        if result[0] == "need_id":  # the card went away between the read and the script
            args[3] = str(await self.redis.incr(self.keys.card_sequence))
            result = await self._claim(keys=[record], args=args)
        if result[0] != "ok":
            return result[0], None
        return "ok", _slot(result[1]).card_id

    async def release(self, mailbox_id: str, gmail: str, merchant_id: str, card_last4: str) -> bool:
        """Drop a merchant's card from the mailbox; True when it was the mailbox's last card,
        so the mailbox is nobody's any more and its password is gone."""
        await self._adopt_unless_migrated(mailbox_id, gmail)
        released = await self._release(
            keys=[self.keys.mailbox_owner(mailbox_id)], args=[merchant_id, card_last4]
        )
        if released == "released":
            await self.redis.delete(self.keys.mailbox_password(mailbox_id))
            return True
        return False

    # --- state written before ownership existed -------------------------------------------

    async def migrated(self) -> bool:
        """The mailbox migration (`MIGRATION`) has run: every mailbox has its record."""
        return bool(await self.redis.exists(self.keys.migration(MIGRATION)))

    async def _adopt_unless_migrated(self, mailbox_id: str, gmail: str) -> None:
        if await self.redis.exists(self.keys.mailbox_owner(mailbox_id)):
            return
        if await self.migrated():
            return
        await self.adopt(mailbox_id, gmail)

    async def legacy_cards(self, mailbox_id: str) -> dict[str, CardSlot]:
        """The card-owner keys of a mailbox (a scan: only for adoption and migration)."""
        pattern = glob_escape(self.keys.card_owner(mailbox_id, "")) + "*"
        keys = [key async for key in self.redis.scan_iter(match=pattern, count=1000)]
        values = await scripts.get_many(self.redis, keys)
        return {
            key.rsplit(":", 1)[1]: _slot(value)
            for key, value in zip(keys, values, strict=True)
            if value
        }

    async def adopt(self, mailbox_id: str, gmail: str) -> None:
        """Write the record that the mailbox's card-owner keys and stored password describe."""
        cards = await self.legacy_cards(mailbox_id)
        password = maybe_text(await self.redis.get(self.keys.mailbox_password(mailbox_id)))
        await self.merge(mailbox_id, gmail, cards, password)

    async def merge(
        self,
        mailbox_id: str,
        gmail: str,
        cards: dict[str, CardSlot],
        password_token: str | None = None,
        also_claimed_by: tuple[str, ...] = (),
    ) -> bool:
        """Fill in the record from state written before it existed: the one merchant among
        the cards (and `also_claimed_by`: merchants whose cards on this mailbox are stored
        elsewhere) owns the mailbox; several make it disputed. Never overrides what the
        record already says; False when it belongs to someone else (nothing written)."""
        merchants = sorted({slot.merchant_id for slot in cards.values()} | set(also_claimed_by))
        if not merchants:
            return False
        one = len(merchants) == 1
        owner, disputed = (merchants[0], "") if one else ("", " ".join(merchants))
        pairs = [x for l4, s in sorted(cards.items()) for x in (l4, f"{s.merchant_id}:{s.card_id}")]
        written = await self._merge(
            keys=[self.keys.mailbox_owner(mailbox_id)],
            args=[gmail, owner, disputed, password_token or "", *pairs],
        )
        return bool(written)
