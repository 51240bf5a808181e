"""Redis replies as the store receives them: text.

Every client handed to the store decodes its replies (`autopay_runtime.connections.open_redis`
sets `decode_responses=True`), so a reply is `str`, never `bytes`. redis-py annotates each reply
as `bytes | str` whatever the client (its types cannot see that option); these functions say
what the reply is for the type checker, and convert or check nothing at run time."""

from __future__ import annotations

from typing import cast


def text(reply: object) -> str:
    """A reply that is there: a string."""
    return cast(str, reply)


def maybe_text(reply: object) -> str | None:
    """A reply that may be missing (`GET`, `HGET` of nothing): a string or None."""
    return cast("str | None", reply)


def text_hash(reply: object) -> dict[str, str]:
    """`HGETALL`'s reply: field → value, both strings."""
    return cast("dict[str, str]", reply)


def texts(reply: object) -> list[str]:
    """A list of members (`SMEMBERS`, `ZRANGE` without scores, `HMGET`...): strings."""
    return cast("list[str]", reply)


def maybe_texts(reply: object) -> list[str | None]:
    """`HMGET`'s or `MGET`'s reply: a string or None for each field or key asked for."""
    return cast("list[str | None]", reply)


def text_set(reply: object) -> set[str]:
    """`SMEMBERS`'s reply: the members, strings."""
    return cast("set[str]", reply)


def scored(reply: object) -> list[tuple[str, float]]:
    """A sorted set's range `withscores=True`: (member, score) pairs."""
    return cast("list[tuple[str, float]]", reply)


# redis-py types `hset(mapping=...)` with an invariant key type (Mapping[EncodableT, ...]), so
# no dict[str, str] fits it although any does at run time: the calls that pass one say so.
