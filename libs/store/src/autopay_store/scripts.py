"""Lua scripts kept as `.lua` files in `autopay_store/lua/`, loaded by name."""

from __future__ import annotations

from functools import cache
from importlib.resources import files

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript


@cache
def source(name: str) -> str:
    """The text of `lua/<name>.lua`."""
    return files("autopay_store").joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")


def register(redis: aioredis.Redis, name: str) -> AsyncScript:
    return redis.register_script(source(name))
