from __future__ import annotations

from pathlib import Path

from hardneg.core.cache import Cache, cache_key
from hardneg.miners.disk_cache import DiskCache


def test_round_trip_counts_and_isolation(tmp_path: Path) -> None:
    cache: Cache = DiskCache(tmp_path)
    key = cache_key("bm25", {"corpus": "abc", "k": 10})
    assert cache.get(key) is None
    cache.set(key, b"payload")
    assert cache.get(key) == b"payload"
    assert cache.get(cache_key("bm25", {"corpus": "abc", "k": 11})) is None
    assert isinstance(cache, DiskCache) and (cache.hits, cache.misses) == (1, 2)
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


def test_values_persist_across_instances(tmp_path: Path) -> None:
    DiskCache(tmp_path).set("llm:x", b"1")
    assert DiskCache(tmp_path).get("llm:x") == b"1"
