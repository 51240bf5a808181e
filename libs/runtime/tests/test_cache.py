"""The in-process cache: bounded, least recently used out first, entries expire."""

from __future__ import annotations

from autopay_runtime.cache import MISSING, TtlCache


def test_a_full_cache_evicts_only_the_least_recently_used_entry():
    cache: TtlCache[str, int] = TtlCache(60, max_entries=3)
    for key in ("a", "b", "c"):
        cache.put(key, 1)
    assert cache.get("a") == 1  # "a" is now the most recently used
    cache.put("d", 1)
    assert cache.get("b") is MISSING
    assert [cache.get(k) for k in ("a", "c", "d")] == [1, 1, 1]
    assert len(cache) == 3


def test_expired_entries_are_missing_and_a_zero_ttl_caches_nothing():
    cache: TtlCache[str, int] = TtlCache(-1)
    cache.put("a", 1)
    assert cache.get("a") is MISSING
    expiring: TtlCache[str, int] = TtlCache(1e-9)
    expiring.put("a", 1)
    assert expiring.get("a") is MISSING
