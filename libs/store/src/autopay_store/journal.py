"""The account journal: a durable copy, in a JetStream key-value bucket with history, of every
Redis key that holds an account (merchants with their key hashes, secrets, subscription and
settings; API-key records; cards and card owners; mailbox owners with their encrypted app
passwords and aliases; sandbox cards; tariffs; the merchant and card id sequences; the orders
that extended a subscription).

Whoever changes such a key in Redis records it here right after (`record`): the key is marked
dirty in Redis, its whole current value is written to the bucket, and the mark is removed. A
write that fails (NATS away) leaves the mark, and `sweep` writes it later. Each entry is the
Redis key's whole value, written with compare-and-set on the entry's revision, so a slower
writer can never put an older value over a newer one.

`restore` writes every entry back into Redis for the keys Redis does not have: after Redis was
lost it brings the accounts back, and on a Redis that has them it changes nothing. A merchant's
`payments_used` is left out of the copy (it changes with every payment); the rebuild counts it
again from the ORDERS stream (`usage_since` says from when).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
import structlog
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NoKeysError
from nats.js.kv import KeyValue

from autopay_store.keys import Keys
from autopay_store.replies import text_hash, texts

log = structlog.get_logger("autopay_store")

VOLATILE_FIELDS = frozenset({"payments_used"})
"""Hash fields that are not copied: derived again on restore."""

CAS_ATTEMPTS = 8


def entry_name(keys: Keys, redis_key: str) -> str:
    """The bucket entry of a Redis key: a digest of its name without the prefix (entry names
    allow few characters; the name itself is inside the value)."""
    return hashlib.sha256(keys.unprefixed(redis_key).encode()).hexdigest()[:40]


async def dump(redis: aioredis.Redis, key: str) -> dict[str, Any] | None:
    """A Redis key's value as JSON-able data, None when the key does not exist."""
    kind = await redis.type(key)
    kind = kind.decode() if isinstance(kind, bytes) else kind
    if kind == "hash":
        data = text_hash(await redis.hgetall(key))
        return {
            "type": "hash",
            "value": {k: v for k, v in data.items() if k not in VOLATILE_FIELDS},
        }
    if kind == "string":
        return {"type": "string", "value": await redis.get(key)}
    if kind == "set":
        return {"type": "set", "value": sorted(await redis.smembers(key))}
    if kind == "none":
        return None
    raise TypeError(f"the journal keeps hashes, strings and sets, not {kind} ({key})")


async def load(redis: aioredis.Redis, key: str, doc: dict[str, Any]) -> None:
    """Write a dumped value back (the key must not exist)."""
    value = doc["value"]
    if doc["type"] == "hash":
        if value:
            await redis.hset(key, mapping=value)
    elif doc["type"] == "string":
        await redis.set(key, value, nx=True)
    elif doc["type"] == "set":
        if value:
            await redis.sadd(key, *value)
    else:
        raise ValueError(f"unknown journal entry type {doc['type']!r}")


@dataclass
class RestoreReport:
    restored: int = 0
    present: int = 0
    deleted: int = 0
    merchants: list[str] = field(default_factory=list)
    """Merchants whose record was restored (their usage must be counted again)."""


class AccountJournal:
    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        bucket: KeyValue | Callable[[], Awaitable[KeyValue]],
        dirty_key: str | None = None,
    ) -> None:
        """`bucket` is the bucket, or how to open it: a service may start before the bucket is
        there (or while NATS is away); its changes stay marked until it opens. `dirty_key` is
        the set of the keys left to copy (default `Keys.journal_dirty`)."""
        self.redis = redis
        self.keys = keys
        self.dirty_key = dirty_key or keys.journal_dirty
        self._open = None if isinstance(bucket, KeyValue) else bucket
        self._bucket: KeyValue | None = bucket if isinstance(bucket, KeyValue) else None

    @property
    def bucket(self) -> KeyValue | None:
        return self._bucket

    @bucket.setter
    def bucket(self, value: KeyValue) -> None:
        self._bucket = value

    async def _opened(self) -> KeyValue:
        if self._bucket is None:
            assert self._open is not None
            self._bucket = await self._open()
        return self._bucket

    async def record(self, *redis_keys: str) -> None:
        """Copy these keys' current values to the bucket. Never raises for the bucket: a key
        whose copy could not be written stays marked dirty for `sweep`."""
        if not redis_keys:
            return
        await self.redis.sadd(self.dirty_key, *redis_keys)
        for key in dict.fromkeys(redis_keys):
            try:
                await self._copy(key)
            except Exception as exc:  # NATS away: the dirty mark keeps it for the sweep
                log.warning("account copy deferred", error=type(exc).__name__)
                continue
            await self.redis.srem(self.dirty_key, key)

    async def sweep(self, limit: int = 500) -> int:
        """Copy the keys left dirty; returns how many were written."""
        pending = texts(await self.redis.srandmember(self.dirty_key, limit))
        written = 0
        for key in pending or []:
            await self._copy(key)
            await self.redis.srem(self.dirty_key, key)
            written += 1
        return written

    async def run(self, interval_s: float) -> None:
        """Sweep every `interval_s` for as long as the process runs (a task of the service)."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                if written := await self.sweep():
                    log.info("account copies written late", count=written)
            except Exception as exc:
                log.warning("account copy sweep failed; retried next round", error=str(exc))

    async def _copy(self, key: str) -> None:
        name = entry_name(self.keys, key)
        bucket = await self._opened()
        for _ in range(CAS_ATTEMPTS):
            try:
                entry = await bucket.get(name)
                revision = entry.revision
                current = entry.value
            except KeyNotFoundError as exc:
                revision = getattr(exc, "entry", None) and exc.entry.revision  # a deleted entry
                revision, current = revision or 0, None
            doc = await dump(self.redis, key)
            if doc is None:
                if current is None:
                    return  # nothing in Redis, nothing in the bucket
                payload = None
            else:
                payload = json.dumps(
                    {"key": self.keys.unprefixed(key), **doc}, sort_keys=True
                ).encode()
                if payload == current:
                    return
            try:
                if payload is None:
                    await bucket.delete(name, last=revision)
                else:
                    await bucket.update(name, payload, last=revision)
                return
            except KeyWrongLastSequenceError:
                continue  # someone wrote in between: read both again
        raise RuntimeError(f"account copy of {self.keys.unprefixed(key)} kept changing")

    async def restore(self) -> RestoreReport:
        """Write back every entry whose key Redis does not have. Idempotent."""
        report = RestoreReport()
        bucket = await self._opened()
        try:
            names = await bucket.keys()
        except NoKeysError:
            return report
        for name in names:
            try:
                entry = await bucket.get(name)
            except KeyNotFoundError:
                report.deleted += 1
                continue
            if entry.value is None:
                report.deleted += 1
                continue
            doc = json.loads(entry.value)
            key = f"{self.keys.prefix}:{doc['key']}"
            if await self.redis.exists(key):
                report.present += 1
                continue
            merchant_id = _merchant_record(doc["key"])
            if merchant_id is not None and doc["type"] == "hash":
                # counted again from ORDERS by the rebuild (`usage_since`); none until then
                doc = {**doc, "value": {**doc["value"], "payments_used": "0"}}
                report.merchants.append(merchant_id)
            await load(self.redis, key, doc)
            report.restored += 1
        return report


def _merchant_record(unprefixed: str) -> str | None:
    """The merchant id when `unprefixed` is a merchant's own record (`merchant:<id>`)."""
    head, _, rest = unprefixed.partition(":")
    if head == "merchant" and rest and ":" not in rest:
        return rest
    return None
