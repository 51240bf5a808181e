"""Lua scripts kept as `.lua` files in `autopay_store/lua/`, loaded by name.

A script may need shared functions first (the order book's scripts start with
`order_common.lua`): `register(redis, "order_match", "order_common")` prepends them.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript


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


def register(redis: aioredis.Redis, name: str, *preludes: str) -> AsyncScript:
    return redis.register_script(source(name, *preludes))
