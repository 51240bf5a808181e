"""Lua scripts kept as `.lua` files in `autopay_store/lua/`, loaded by name.

A script may need shared functions first (the order book's scripts start with
`order_common.lua`): `register(redis, "order_match", "order_common")` prepends them.

Every call checks that the script's KEYS hash to one Redis Cluster slot (a script may only
touch keys of one slot there; on a single Redis it would work and then fail in a Cluster). The
check costs a CRC16 per key and raises `CrossSlotKeys` before anything is sent. The scripts
that span slots today are listed in `MULTI_SLOT`, each with why; no other may.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import cache
from importlib.resources import files
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.crc import key_slot
from redis.typing import EncodableT, KeyT

MULTI_SLOT: dict[str, str] = {
    # `<prefix>:mailbox:<m>:cursor` and `<prefix>:mailbox:<m>:lease` carry no hash tag, so
    # they fall in two slots: the cursor is advanced only while the lease still names this
    # replica (fencing, `autopay_store.mailbox_state`). Giving mail-ingest's keys one tag per
    # mailbox renames keys under running data: that is a migration of its own.
    "cursor_save": "cursor and lease of one mailbox, no shared hash tag",
}
"""Scripts allowed to get KEYS of several Cluster slots: name → why. Keep it short."""


class CrossSlotKeys(ValueError):
    """A script was called with KEYS that a Redis Cluster keeps in different slots."""


@cache
def source(name: str, *preludes: str) -> str:
    """The text of `lua/<name>.lua`, after the text of each prelude."""
    parts = [*preludes, name]
    return "\n".join(
        files("autopay_store").joinpath("lua", f"{part}.lua").read_text(encoding="utf-8")
        for part in parts
    )


def names() -> list[str]:
    """Every script of the package (without `.lua`)."""
    return sorted(
        entry.name.removesuffix(".lua")
        for entry in files("autopay_store").joinpath("lua").iterdir()
        if entry.name.endswith(".lua")
    )


def slot(key: KeyT) -> int:
    """The Redis Cluster slot of `key` (its hash tag's, when it has one)."""
    if isinstance(key, str):
        key = key.encode()
    elif not isinstance(key, bytes | memoryview):
        key = str(key).encode()
    return key_slot(bytes(key))


def check_one_slot(name: str, keys: Sequence[KeyT]) -> None:
    """Raise `CrossSlotKeys` unless every key of `keys` is in one Cluster slot."""
    if len(keys) < 2:
        return
    first = slot(keys[0])
    if all(slot(key) == first for key in keys[1:]):
        return
    where = ", ".join(f"{key!r} → {slot(key)}" for key in keys)
    raise CrossSlotKeys(
        f"script {name!r} got KEYS in several Redis Cluster slots ({where}); give them one "
        f"hash tag, or list the script in autopay_store.scripts.MULTI_SLOT with why"
    )


class Script:
    """A registered script (redis-py's `AsyncScript`) that checks its KEYS on every call."""

    def __init__(self, name: str, script: AsyncScript) -> None:
        self.name = name
        self.script = script
        self.single_slot = name not in MULTI_SLOT

    @property
    def sha(self) -> str:
        return self.script.sha

    def check(self, keys: Sequence[KeyT]) -> None:
        if self.single_slot:
            check_one_slot(self.name, keys)

    async def __call__(
        self,
        keys: Sequence[KeyT] | None = None,
        args: Iterable[EncodableT] | None = None,
        client: aioredis.Redis | None = None,
    ) -> Any:
        self.check(keys or ())
        return await self.script(keys=keys, args=args, client=client)

    def queue(self, pipe: Any, keys: Sequence[KeyT], args: Sequence[EncodableT]) -> None:
        """Queue an EVALSHA on `pipe` as it is (the caller handles `NoScriptError`)."""
        self.check(keys)
        pipe.evalsha(self.sha, len(keys), *keys, *args)


def register(redis: aioredis.Redis, name: str, *preludes: str) -> Script:
    return Script(name, redis.register_script(source(name, *preludes)))
