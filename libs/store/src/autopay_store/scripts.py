"""Lua scripts kept as `.lua` files in `autopay_store/lua/`, loaded by name.

A script may need shared functions first (the order book's scripts start with
`order_common.lua`): `register(redis, "order_match", "order_common")` prepends them.

Every call checks that the script's KEYS hash to one Redis Cluster slot (a script may only
touch keys of one slot there; on a single Redis it would work and then fail in a Cluster). The
check costs a CRC16 per key and raises `CrossSlotKeys` before anything is sent. A script that
must span slots would be listed in `MULTI_SLOT`, with why; none does.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import cache
from importlib.resources import files
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.crc import key_slot
from redis.exceptions import NoScriptError
from redis.typing import EncodableT, KeyT

MULTI_SLOT: dict[str, str] = {}
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
        """Queue an EVALSHA on `pipe` as it is (the caller handles `NoScriptError`). Queued as a
        plain command: a Cluster pipeline refuses its `evalsha` method, but sends the command
        to the node of its keys' slot like any other."""
        self.check(keys)
        pipe.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)

    async def many(self, calls: Sequence[tuple[Sequence[KeyT], Sequence[EncodableT]]]) -> list[Any]:
        """Every call (`(keys, args)`) of this script in one non-transactional pipeline (a
        Cluster splits it by node); result i is call i's answer or its error. The calls that
        found the script unknown (a restarted Redis, a new node) run again once it is loaded:
        they did not run at all the first time."""
        results = await self._pipelined(calls)
        missing = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
        if missing:
            await self.script.registered_client.script_load(self.script.script)
            again = await self._pipelined([calls[i] for i in missing])
            for i, result in zip(missing, again, strict=True):
                results[i] = result
        return results

    async def _pipelined(
        self, calls: Sequence[tuple[Sequence[KeyT], Sequence[EncodableT]]]
    ) -> list[Any]:
        if not calls:
            return []
        async with self.script.registered_client.pipeline(transaction=False) as pipe:
            for keys, args in calls:
                self.queue(pipe, keys, args)
            return list(await pipe.execute(raise_on_error=False))


async def get_many(redis: aioredis.Redis, keys: Sequence[KeyT]) -> list[Any]:
    """MGET of `keys`; on a Cluster, one MGET per slot (`mget_nonatomic`), in the keys' order."""
    if not keys:
        return []
    if hasattr(redis, "mget_nonatomic"):
        return await redis.mget_nonatomic(list(keys))
    return await redis.mget(list(keys))


def first_error(results: Sequence[Any]) -> Sequence[Any]:
    """`results` of `Script.many` (or of a pipeline run with `raise_on_error=False`), or the
    first error among them raised."""
    for result in results:
        if isinstance(result, Exception):
            raise result
    return results


def register(redis: aioredis.Redis, name: str, *preludes: str) -> Script:
    return Script(name, redis.register_script(source(name, *preludes)))
