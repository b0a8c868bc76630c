"""Candidate lists: compact serialisation and the cache wrapper around their computation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hardneg.core.beir import BeirSplit, Corpus, Document
from hardneg.miners.candidates import (
    SOURCE_BM25,
    SOURCE_DENSE,
    CandidateLists,
    bucket_depth,
    cached_candidates,
    candidates_key,
    queries_fingerprint,
    retrieval_depth,
)
from hardneg.miners.disk_cache import DiskCache
from hardneg.miners.filters import FilterConfig


def sample_lists(with_sources: bool = False) -> CandidateLists:
    return CandidateLists(
        query_ids=("q1", "q2"),
        positions=np.array([[3, 1, -1], [0, 2, 4]], np.int32),  # (2, 3)
        scores=np.array([[0.5, 0.25, 0.0], [1.5, 1.25, 1.0]], np.float32),  # (2, 3)
        positive_ids=(("d9",), ("d7", "d8")),
        positive_scores=((0.75,), (2.0, 1.75)),
        sources=np.array([[1, 3, 0], [2, 2, 1]], np.uint8) if with_sources else None,
    )


@pytest.mark.parametrize("with_sources", [False, True])
def test_bytes_round_trip_is_exact(with_sources: bool) -> None:
    lists = sample_lists(with_sources)
    value = lists.to_bytes()
    back = CandidateLists.from_bytes(value)
    assert back.query_ids == lists.query_ids
    assert back.positive_ids == lists.positive_ids
    assert back.positive_scores == lists.positive_scores
    np.testing.assert_array_equal(back.positions, lists.positions)
    np.testing.assert_array_equal(back.scores, lists.scores)
    if with_sources:
        assert back.sources is not None and lists.sources is not None
        np.testing.assert_array_equal(back.sources, lists.sources)
    else:
        assert back.sources is None
    assert back.hits(0) == [(3, 0.5), (1, 0.25)]
    assert len(value) < 2000  # compact: arrays and a little JSON, no pickle
    assert SOURCE_BM25 | SOURCE_DENSE == 3


def test_shapes_are_checked() -> None:
    with pytest.raises(ValueError, match="positions"):
        CandidateLists(("q1",), np.zeros((2, 3), np.int32), np.zeros((2, 3), np.float32), (), ())


def test_cached_candidates_computes_once_then_hits(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path)
    calls: list[int] = []

    def compute() -> CandidateLists:
        calls.append(1)
        return sample_lists()

    key = candidates_key("test", {"corpus": "abc", "depth": 32})
    first, hit_first = cached_candidates(cache, key, compute)
    second, hit_second = cached_candidates(cache, key, compute)
    assert (hit_first, hit_second) == (False, True)
    assert len(calls) == 1 and (cache.hits, cache.misses) == (1, 1)
    assert second.positive_scores == first.positive_scores
    other = candidates_key("test", {"corpus": "abd", "depth": 32})
    assert cached_candidates(cache, other, compute)[1] is False
    assert len(calls) == 2


def test_a_corrupt_cache_value_is_recomputed(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path)
    key = candidates_key("test", {"x": 1})
    cache.set(key, b"not an npz")
    lists, hit = cached_candidates(cache, key, sample_lists)
    assert not hit and lists.query_ids == ("q1", "q2")
    assert CandidateLists.from_bytes(cache.get(key) or b"").query_ids == ("q1", "q2")


def test_bucketed_depth() -> None:
    assert [bucket_depth(d) for d in (1, 32, 33, 64, 65, 300)] == [32, 32, 64, 64, 128, 512]
    with pytest.raises(ValueError):
        bucket_depth(0)


def split_with(qrels: dict[str, dict[str, int]], query: str = "first") -> BeirSplit:
    corpus = Corpus.from_documents([Document(f"d{i}", "", f"text {i}") for i in range(4)])
    return BeirSplit("train", corpus, {"q1": query, "q2": "second"}, qrels)


def test_queries_fingerprint_changes_with_texts_and_qrels() -> None:
    base = split_with({"q1": {"d0": 1}, "q2": {"d1": 1}})
    assert queries_fingerprint(base) == queries_fingerprint(
        split_with({"q1": {"d0": 1}, "q2": {"d1": 1}})
    )
    assert queries_fingerprint(base) != queries_fingerprint(
        split_with({"q1": {"d0": 1}, "q2": {"d2": 1}})
    )
    assert queries_fingerprint(base) != queries_fingerprint(
        split_with({"q1": {"d0": 1}, "q2": {"d1": 1}}, query="other")
    )


def test_retrieval_depth_leaves_room_for_judged_documents() -> None:
    split = split_with({"q1": {"d0": 1, "d1": 0, "d2": 1}, "q2": {"d1": 1}})
    # range_max default without score filters: 0 + 3 + max_positives (2); + 3 judged
    assert retrieval_depth(split, FilterConfig(num_negatives=3)) == 5 + 3
