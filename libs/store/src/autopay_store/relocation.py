"""Moving a mailbox's order book and mail-ingest state from an old mailbox id to its current one.

Used by the mailbox migration (`autopay_store.migrations`). Keys are read and written again under
the new id, never RENAMEd: a card's keys carry the hash tag `{c:<mailbox_id>:<last4>}`, so the
old and the new key are in different slots. Each step writes the new key first and deletes the
old one after, merging with what the new id already has (its own entries win): a run that
stopped half-way is completed by running again.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import redis.asyncio as aioredis

from autopay_contracts.events import Order
from autopay_store.keys import Keys
from autopay_store.replies import maybe_text, scored, text_hash


@dataclass
class Moved:
    """What a relocation moved (all zero when there was nothing left under the old id)."""

    orders: int = 0
    card_keys: int = 0
    """Holds, releases, credit decisions, ... (per card, other than orders)."""
    locators: int = 0
    deadlines: int = 0
    ingest_keys: int = 0

    def add(self, other: Moved) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def any(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self))


class Relocation:
    """The state of one mailbox id (`old`) moving to another (`new`, address `gmail`)."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, old: str, new: str, gmail: str) -> None:
        self.redis = redis
        self.keys = keys
        self.old = old
        self.new = new
        self.gmail = gmail
        self.moved = Moved()

    # --- the order book -----------------------------------------------------------------

    async def card(self, card_last4: str, suffixes: list[str]) -> None:
        """Every key of one card (`{c:<old>:<last4>}:<suffix>`)."""
        for suffix in sorted(suffixes, key=lambda s: not s.startswith("order:")):
            src = self.keys.card(self.old, card_last4, suffix)
            dst = self.keys.card(self.new, card_last4, suffix)
            if suffix.startswith("order:"):
                await self._order(card_last4, suffix.removeprefix("order:"), src, dst)
                continue
            merge = {
                "holds": self._holds,
                "releases": self._releases,
                "credits": self._credits,
                "credits-seen": self._credits_seen,
            }.get(suffix, self._copy_if_absent)
            if await self.redis.exists(src):
                await merge(src, dst)
                await self.redis.delete(src)
                self.moved.card_keys += 1

    async def _order(self, card_last4: str, order_id: str, src: str, dst: str) -> None:
        state = text_hash(await self.redis.hgetall(src))
        if state and not await self.redis.exists(dst):
            if state.get("order"):
                order = Order.model_validate_json(state["order"])
                update = {"mailbox_id": self.new, "gmail": self.gmail}
                state["order"] = order.model_copy(update=update).model_dump_json()
            ttl = await self.redis.pttl(src)
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.hset(dst, mapping=state)  # type: ignore[arg-type]  # redis-py: invariant mapping key, see replies.py
                if ttl > 0:
                    pipe.pexpire(dst, ttl)
                await pipe.execute()
        if state:
            await self.redis.delete(src)
            self.moved.orders += 1
        locator = self.keys.order_locator(order_id)
        if await self.redis.get(locator) == f"{self.old}:{card_last4}":
            await self.redis.set(locator, f"{self.new}:{card_last4}", keepttl=True)
            self.moved.locators += 1

    async def _holds(self, src: str, dst: str) -> None:
        """amount → holder order ids: the union, the new id's holders first."""
        for amount, ids in text_hash(await self.redis.hgetall(src)).items():
            holders = (maybe_text(await self.redis.hget(dst, amount)) or "").split()
            holders += [i for i in ids.split() if i not in holders]
            await self.redis.hset(dst, amount, " ".join(holders))

    async def _releases(self, src: str, dst: str) -> None:
        """amount → end of its latest hold: the later of the two."""
        for amount, until in scored(await self.redis.zrange(src, 0, -1, withscores=True)):
            current = await self.redis.zscore(dst, amount)
            if current is None or current < until:
                await self.redis.zadd(dst, {amount: until})

    async def _credits(self, src: str, dst: str) -> None:
        """credit id → its first decision: a decision already made under the new id stays."""
        for credit_id, decision in text_hash(await self.redis.hgetall(src)).items():
            await self.redis.hsetnx(dst, credit_id, decision)

    async def _credits_seen(self, src: str, dst: str) -> None:
        pairs = scored(await self.redis.zrange(src, 0, -1, withscores=True))
        if pairs:
            await self.redis.zadd(dst, dict(pairs), nx=True)

    async def _copy_if_absent(self, src: str, dst: str) -> None:
        if await self.redis.exists(dst):
            return
        dumped = await self.redis.dump(src)
        if dumped is None:
            return
        ttl = await self.redis.pttl(src)
        await self.redis.restore(dst, max(ttl, 0), dumped)

    async def deadlines(self, members: dict[str, float]) -> None:
        """Deadline members `<old>:<last4>:<order id>` (with their scores) → the new id."""
        for member, score in members.items():
            card_and_order = member.removeprefix(f"{self.old}:")
            card_last4 = card_and_order.split(":", 1)[0]
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.zadd(
                    self.keys.deadline_shard_of(self.new, card_last4),
                    {f"{self.new}:{card_and_order}": score},
                    nx=True,
                )
                pipe.zrem(self.keys.deadline_shard_of(self.old, card_last4), member)
                pipe.zrem(self.keys.deadlines, member)
                await pipe.execute()
            self.moved.deadlines += 1

    # --- mail-ingest ----------------------------------------------------------------------

    _INGEST_STATE = ("cursor", "health")

    def _ingest_state(self, parts: list[str]) -> list[str]:
        """The parts of `mailbox:<old>:<part>` that move: cursor, health, dedup markers. Raw
        evidence stays (events name its key), the app password is the accounts' part, and the
        lease is its holder's (released when it stops watching the old id, else it expires)."""
        return [p for p in parts if p in self._INGEST_STATE or p.startswith("seen:")]

    async def copy_ingest(self, parts: list[str]) -> None:
        """Copy mail-ingest's state to the new id, before the new id is registered (so its
        watcher starts from the cursor, with the dedup markers)."""
        for part in self._ingest_state(parts):
            src, dst = self.keys.mailbox(self.old, part), self.keys.mailbox(self.new, part)
            if part == "cursor":
                await self._cursor(src, dst)
            elif part == "health":
                await self._health(src, dst)
            else:
                await self._copy_if_absent(src, dst)

    async def drop_ingest(self, parts: list[str]) -> None:
        """Delete the old id's copied state, once the old id is no longer registered."""
        for part in self._ingest_state(parts):
            if await self.redis.delete(self.keys.mailbox(self.old, part)):
                self.moved.ingest_keys += 1

    async def _cursor(self, src: str, dst: str) -> None:
        """Both ids watched one inbox: with one UIDVALIDITY, the lower UID (mail after it is
        read again and dropped by the dedup markers, never lost); else the new id's cursor."""
        old = text_hash(await self.redis.hgetall(src))
        new = text_hash(await self.redis.hgetall(dst))
        if not old.get("uidvalidity"):
            return
        if not new.get("uidvalidity"):
            await self.redis.hset(dst, mapping=old)  # type: ignore[arg-type]  # redis-py: invariant mapping key, see replies.py
        elif new["uidvalidity"] == old["uidvalidity"]:
            last_uid = min(int(new.get("last_uid", 0)), int(old.get("last_uid", 0)))
            if str(last_uid) != new.get("last_uid"):
                await self.redis.hset(dst, "last_uid", last_uid)

    async def _health(self, src: str, dst: str) -> None:
        if await self.redis.exists(dst):
            return
        health = text_hash(await self.redis.hgetall(src))
        if health:
            await self.redis.hset(dst, mapping={**health, "gmail": self.gmail})  # type: ignore[dict-item]  # redis-py: invariant mapping key, see replies.py
