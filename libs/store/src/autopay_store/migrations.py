"""The mailbox migration: state stored under mailbox ids of the old address rule moves to the
ids of the normalized addresses, and every mailbox gets its owner record.

A mailbox id used to be the digest of the lowercased address (`legacy_mailbox_id_for`); it is
now the digest of the normalized one (`mailbox_id_for`), so `k.arta+x@gmail.com`,
`karta@googlemail.com` and `karta@gmail.com` are one mailbox. For each id whose address now
gives another id, this moves:
- accounts: the cards (`gmail`, `mailbox_id`), their card-owner keys, the app password, into the
  mailbox-owner record of the new id;
- the order book, per card: orders (the order JSON rewritten), holds, releases, credit
  decisions; the order locators and the deadlines (`autopay_store.relocation`);
- mail-ingest: cursor, health, dedup markers (the old lease is deleted; raw evidence stays);
- MAILBOX_CONFIG: `MailboxRegistered` for the new id with the old id's settings, then
  `MailboxRemoved` for the old id, so mail-ingest watches the mailbox under its new id.

Several old ids of one mailbox are merged when their cards are one merchant's. When they are
several merchants', nothing of that mailbox moves: it is reported as a conflict and marked
disputed (nobody connects cards on it) for an operator to settle. Mailboxes whose id does not
change get their owner record too (or are reported when several merchants have cards on them).
Running it again changes nothing. Best run while no mail arrives for the moved mailboxes: a
credit read under an old id in between is decided there (unmatched).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field

import redis.asyncio as aioredis
from nats.js import JetStreamContext

from autopay_contracts import (
    Event,
    MailboxRegistered,
    MailboxRemoved,
    Namespace,
    legacy_mailbox_id_for,
    mailbox_id_for,
    normalize_gmail,
)
from autopay_contracts.streams import MAILBOX_CONFIG
from autopay_store.accounts import Card
from autopay_store.keys import Keys, glob_escape
from autopay_store.mailboxes import MIGRATION, CardSlot, MailboxOwners
from autopay_store.rebuild import latest_mailbox_config
from autopay_store.relocation import Moved, Relocation
from autopay_store.replies import maybe_text


@dataclass
class Conflict:
    """A mailbox with cards of several merchants: left as it is, for an operator."""

    gmail: str
    mailbox_id: str
    legacy_mailbox_ids: list[str]
    merchants: list[str]


@dataclass
class MigrationReport:
    moved: list[dict] = field(default_factory=list)
    """`{"gmail", "mailbox_id", "from": [old ids]}` per mailbox whose state moved."""
    conflicts: list[Conflict] = field(default_factory=list)
    cards: int = 0
    """Card entries rewritten (or merged away: one merchant's two cards of one pair)."""
    owners: int = 0
    """Mailbox-owner records written or filled in."""
    events: int = 0
    """MAILBOX_CONFIG events published."""
    state: Moved = field(default_factory=Moved)

    def as_dict(self) -> dict:
        return {
            "moved": self.moved,
            "conflicts": [asdict(c) for c in self.conflicts],
            "cards": self.cards,
            "owners": self.owners,
            "events": self.events,
            **asdict(self.state),
        }


@dataclass
class _Inventory:
    """What one scan of the prefix found, by mailbox id."""

    card_state: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    """mailbox → last4 → key suffixes under the card's hash tag."""
    ingest: dict[str, list[str]] = field(default_factory=dict)
    """mailbox → parts of `mailbox:<id>:<part>`."""
    card_owners: dict[str, dict[str, CardSlot]] = field(default_factory=dict)
    cards: list[Card] = field(default_factory=list)
    deadlines: dict[str, dict[str, float]] = field(default_factory=dict)
    addresses: dict[str, str] = field(default_factory=dict)
    """mailbox → an address stored with it."""


@dataclass
class _Mailbox:
    """One mailbox (normalized address) and the old ids its state is stored under."""

    gmail: str
    mailbox_id: str
    legacy: set[str] = field(default_factory=set)

    @property
    def ids(self) -> set[str]:
        return {self.mailbox_id, *self.legacy}


class MailboxMigration:
    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        js: JetStreamContext | None = None,
        ns: Namespace | None = None,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.js = js
        self.ns = ns
        self.owners = MailboxOwners(redis, keys)
        self.report = MigrationReport()

    async def run(self) -> MigrationReport:
        config = await self._mailbox_config()
        found = await self._inventory(config)
        mailboxes = self._mailboxes(found)
        for mailbox in sorted(mailboxes.values(), key=lambda m: m.gmail):
            merchants = self._merchants(found, mailbox)
            record = await self.owners.get(mailbox.mailbox_id)
            if record is not None:
                merchants |= {record.owner} if record.owner else set(record.disputed)
            if len(merchants) > 1:
                await self._conflict(found, mailbox, sorted(merchants))
                continue
            await self._move(found, config, mailbox)
        await self.redis.set(self.keys.migration(MIGRATION), int(time.time()))
        return self.report

    # --- what is there ----------------------------------------------------------------------

    async def _mailbox_config(self) -> dict[str, Event]:
        if self.js is None or self.ns is None:
            return {}
        return dict(await latest_mailbox_config(self.js, self.ns))

    async def _inventory(self, config: dict[str, Event]) -> _Inventory:
        found = _Inventory()
        prefix = self.keys.prefix + ":"
        async for key in self.redis.scan_iter(match=glob_escape(prefix) + "*", count=1000):
            rest = key[len(prefix) :]
            if rest.startswith("{c:") and "}:" in rest:
                tag, suffix = rest[3:].split("}:", 1)
                mailbox_id, _, last4 = tag.rpartition(":")
                found.card_state.setdefault(mailbox_id, {}).setdefault(last4, []).append(suffix)
            elif rest.startswith("mailbox:") and rest.count(":") >= 2:
                _, mailbox_id, part = rest.split(":", 2)
                found.ingest.setdefault(mailbox_id, []).append(part)
            elif rest.startswith("card-owner:") and rest.count(":") == 2:
                _, mailbox_id, last4 = rest.split(":")
                value = maybe_text(await self.redis.get(key))
                if value:
                    merchant_id, _, card_id = value.rpartition(":")
                    slot = CardSlot(merchant_id, int(card_id))
                    found.card_owners.setdefault(mailbox_id, {})[last4] = slot
            elif rest.startswith("merchant:") and rest.endswith(":cards") and rest.count(":") == 2:
                for raw in (await self.redis.hgetall(key)).values():
                    found.cards.append(Card(**json.loads(raw)))
        for deadlines in self.keys.every_deadline_set:
            async for member, score in self.redis.zscan_iter(deadlines):
                found.deadlines.setdefault(member.split(":", 1)[0], {})[member] = score
        await self._addresses(found, config)
        return found

    async def _addresses(self, found: _Inventory, config: dict[str, Event]) -> None:
        """Where each mailbox id's address is written: cards, mailbox config, mailbox health,
        then the orders (for ids that only orders remain of)."""
        for card in found.cards:
            found.addresses.setdefault(card.mailbox_id, card.gmail)
        for mailbox_id, event in config.items():
            found.addresses.setdefault(mailbox_id, event.gmail)  # type: ignore[attr-defined]
        for mailbox_id, parts in found.ingest.items():
            if mailbox_id not in found.addresses and "health" in parts:
                gmail = maybe_text(
                    await self.redis.hget(self.keys.mailbox_health(mailbox_id), "gmail")
                )
                if gmail:
                    found.addresses[mailbox_id] = gmail
        for mailbox_id, cards in found.card_state.items():
            if mailbox_id in found.addresses:
                continue
            for last4, suffixes in cards.items():
                order = next((s for s in suffixes if s.startswith("order:")), None)
                if order is not None:
                    key = self.keys.card(mailbox_id, last4, order)
                    raw = maybe_text(await self.redis.hget(key, "order"))
                    if raw:
                        found.addresses[mailbox_id] = json.loads(raw)["gmail"]
                        break

    def _mailboxes(self, found: _Inventory) -> dict[str, _Mailbox]:
        """Every mailbox by its current id, with the old ids its state is under. An id that
        neither rule gives for its address is left alone."""
        mailboxes: dict[str, _Mailbox] = {}

        def mailbox(gmail: str) -> _Mailbox:
            gmail = normalize_gmail(gmail)
            new = mailbox_id_for(gmail)
            return mailboxes.setdefault(new, _Mailbox(gmail, new))

        for mailbox_id, address in found.addresses.items():
            if mailbox_id == mailbox_id_for(address):
                mailbox(address)
            elif mailbox_id == legacy_mailbox_id_for(address):
                mailbox(address).legacy.add(mailbox_id)
        return mailboxes

    def _merchants(self, found: _Inventory, mailbox: _Mailbox) -> set[str]:
        ids = mailbox.ids
        merchants = {card.merchant_id for card in found.cards if card.mailbox_id in ids}
        for mailbox_id in ids:
            merchants |= {s.merchant_id for s in found.card_owners.get(mailbox_id, {}).values()}
        return merchants

    # --- conflicts ------------------------------------------------------------------------

    async def _conflict(self, found: _Inventory, mailbox: _Mailbox, merchants: list[str]) -> None:
        cards = found.card_owners.get(mailbox.mailbox_id, {})
        if await self.owners.merge(
            mailbox.mailbox_id, mailbox.gmail, cards, also_claimed_by=tuple(merchants)
        ):
            self.report.owners += 1
        self.report.conflicts.append(
            Conflict(mailbox.gmail, mailbox.mailbox_id, sorted(mailbox.legacy), merchants)
        )

    # --- moving ---------------------------------------------------------------------------

    async def _move(self, found: _Inventory, config: dict[str, Event], mailbox: _Mailbox) -> None:
        """Orders and accounts first; mail-ingest's state is copied before the new id is
        registered and deleted after the old ids are removed, so a watcher of either id
        always finds its cursor and dedup markers."""
        relocations = [
            Relocation(self.redis, self.keys, old, mailbox.mailbox_id, mailbox.gmail)
            for old in sorted(mailbox.legacy)
        ]
        for relocation in relocations:
            for last4, suffixes in sorted(found.card_state.get(relocation.old, {}).items()):
                await relocation.card(last4, suffixes)
            await relocation.deadlines(found.deadlines.get(relocation.old, {}))
        await self._move_accounts(found, mailbox)
        for relocation in relocations:
            await relocation.copy_ingest(found.ingest.get(relocation.old, []))
        await self._publish_config(config, mailbox)
        moved = Moved()
        for relocation in relocations:
            await relocation.drop_ingest(found.ingest.get(relocation.old, []))
            moved.add(relocation.moved)
        self.report.state.add(moved)
        if mailbox.legacy and (moved.any() or self._has_accounts(found, mailbox)):
            self.report.moved.append(
                {
                    "gmail": mailbox.gmail,
                    "mailbox_id": mailbox.mailbox_id,
                    "from": sorted(mailbox.legacy),
                }
            )

    @staticmethod
    def _has_accounts(found: _Inventory, mailbox: _Mailbox) -> bool:
        return any(card.mailbox_id in mailbox.legacy for card in found.cards) or any(
            mailbox_id in found.card_owners for mailbox_id in mailbox.legacy
        )

    async def _move_accounts(self, found: _Inventory, mailbox: _Mailbox) -> None:
        """Cards and card-owner keys onto the new id (one card per merchant and last4, the id
        the new mailbox already has, else the oldest), then the owner record."""
        new = mailbox.mailbox_id
        current = found.card_owners.get(new, {})
        slots = dict(current)  # the new id's own cards stay as they are
        for old in sorted(mailbox.legacy):
            for last4, slot in found.card_owners.get(old, {}).items():
                if last4 not in current:  # else the oldest card of the old ids
                    slots[last4] = min(slots.get(last4, slot), slot, key=lambda s: s.card_id)
        cards = sorted(
            (c for c in found.cards if c.mailbox_id in mailbox.ids), key=lambda c: c.card_id
        )
        for card in cards:
            slots.setdefault(card.card_last4, CardSlot(card.merchant_id, card.card_id))
        for card in cards:
            keep = slots[card.card_last4].card_id == card.card_id
            stored = Card(card.card_id, card.merchant_id, card.card_last4, mailbox.gmail, new)
            if keep and stored == card:
                continue
            merchant_cards = self.keys.merchant_cards(card.merchant_id)
            if keep:
                await self.redis.hset(merchant_cards, str(card.card_id), json.dumps(asdict(stored)))
            else:
                await self.redis.hdel(merchant_cards, str(card.card_id))
            self.report.cards += 1
        for last4, slot in slots.items():
            if current.get(last4) != slot:
                await self.redis.set(
                    self.keys.card_owner(new, last4), f"{slot.merchant_id}:{slot.card_id}"
                )
        password = maybe_text(await self.redis.get(self.keys.mailbox_password(new)))
        for old in sorted(mailbox.legacy):
            password = password or maybe_text(await self.redis.get(self.keys.mailbox_password(old)))
        if await self._record_needs(slots, password, mailbox) and await self.owners.merge(
            new, mailbox.gmail, slots, password
        ):
            self.report.owners += 1
        stale = [self.keys.mailbox_password(old) for old in mailbox.legacy]
        stale += [
            self.keys.card_owner(old, last4)
            for old in mailbox.legacy
            for last4 in found.card_owners.get(old, {})
        ]
        record = await self.owners.get(new)
        if record is not None and record.password_token:  # the record holds it now
            stale.append(self.keys.mailbox_password(new))
        if stale:
            await self.redis.delete(*stale)

    async def _record_needs(
        self, slots: dict[str, CardSlot], password: str | None, mailbox: _Mailbox
    ) -> bool:
        """Whether the owner record lacks something these cards (or password) would add."""
        if not slots:
            return False
        record = await self.owners.get(mailbox.mailbox_id)
        if record is None:
            return True
        return bool(set(slots) - set(record.cards)) or bool(password and not record.password_token)

    # --- mail-ingest's configuration ------------------------------------------------------

    async def _publish_config(self, config: dict[str, Event], mailbox: _Mailbox) -> None:
        """Register the mailbox under its new id with its latest settings (unless the new id
        is registered already), then remove the old ids."""
        registered = [
            event
            for old in mailbox.legacy
            if isinstance(event := config.get(old), MailboxRegistered)
        ]
        if not registered:
            return
        now_ms = time.time_ns() // 1_000_000
        if not isinstance(config.get(mailbox.mailbox_id), MailboxRegistered):
            latest = max(registered, key=lambda e: e.revision)
            aliases = {normalize_gmail(a) for a in latest.aliases} - {mailbox.gmail}
            await self._publish(
                latest.model_copy(
                    update={
                        "mailbox_id": mailbox.mailbox_id,
                        "gmail": mailbox.gmail,
                        "revision": max(now_ms, latest.revision + 1),
                        "aliases": tuple(sorted(aliases)),
                    }
                )
            )
        for event in registered:
            await self._publish(
                MailboxRemoved(
                    mailbox_id=event.mailbox_id,
                    gmail=event.gmail,
                    revision=max(now_ms, event.revision + 1),
                )
            )

    async def _publish(self, event: MailboxRegistered | MailboxRemoved) -> None:
        assert self.js is not None and self.ns is not None
        await self.js.publish(
            event.subject(self.ns),
            event.to_bytes(),
            stream=MAILBOX_CONFIG.name(self.ns),
            headers=event.headers(),
            timeout=5,
        )
        self.report.events += 1


async def migrate_mailboxes(
    redis: aioredis.Redis,
    keys: Keys,
    js: JetStreamContext | None = None,
    ns: Namespace | None = None,
) -> MigrationReport:
    """Run the mailbox migration (see the module's docstring); idempotent."""
    return await MailboxMigration(redis, keys, js, ns).run()
