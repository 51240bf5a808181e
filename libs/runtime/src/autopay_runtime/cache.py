"""A tiny in-process TTL cache with least-recently-used eviction for hot paths (the gateway's
authenticated merchants and connected cards, the merchant bot's merchants without a chat).
When full, the entry used longest ago makes room; nothing else is evicted, so a flood of new
keys cannot flush the entries in use. An entry is gone once `clock()` reaches its expiry."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")
_MISSING = object()


class TtlCache(Generic[K, V]):
    def __init__(
        self,
        ttl_s: float,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.clock = clock
        self._items: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K, default: object = _MISSING) -> V | object:
        item = self._items.get(key)
        if item is None:
            return default
        expires, value = item
        if expires <= self.clock():
            self._items.pop(key, None)
            return default
        self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        if self.ttl_s <= 0:
            return
        self._items[key] = (self.clock() + self.ttl_s, value)
        self._items.move_to_end(key)
        while len(self._items) > self.max_entries:
            self._items.popitem(last=False)

    def discard(self, key: K) -> None:
        self._items.pop(key, None)

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


MISSING = _MISSING
