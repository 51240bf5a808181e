"""A tiny in-process TTL cache (authenticated merchants, connected cards) for the hot path."""

from __future__ import annotations

import time
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")
_MISSING = object()


class TtlCache(Generic[K, V]):
    def __init__(self, ttl_s: float, max_entries: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._items: dict[K, tuple[float, V]] = {}

    def get(self, key: K, default: object = _MISSING) -> V | object:
        item = self._items.get(key)
        if item is None:
            return default
        expires, value = item
        if expires < time.monotonic():
            self._items.pop(key, None)
            return default
        return value

    def put(self, key: K, value: V) -> None:
        if self.ttl_s <= 0:
            return
        if len(self._items) >= self.max_entries:
            self._items.clear()
        self._items[key] = (time.monotonic() + self.ttl_s, value)

    def discard(self, key: K) -> None:
        self._items.pop(key, None)

    def clear(self) -> None:
        self._items.clear()


MISSING = _MISSING
