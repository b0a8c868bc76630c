from __future__ import annotations

from pathlib import Path

import pytest

from hardneg.core.beir import DataError
from hardneg.core.negatives import MinedQuery, read_meta, read_mined, write_mined

ROW = MinedQuery(
    query_id="q1",
    query="which animals descend from wolves",
    positive_ids=("d2",),
    positives=("Dogs are loyal descendants of wolves.",),
    negative_ids=("d5", "gen:ab12"),
    negatives=("Grey wolves hunt in packs.", "Foxes are not wolves."),
    positive_scores=(0.9,),
    negative_scores=(0.7, None),
    method="bm25",
)


def test_round_trip_with_meta(tmp_path: Path) -> None:
    path = tmp_path / "neg.jsonl"
    written = write_mined(path, [ROW, ROW], {"method": "bm25", "k": 10})
    assert written.meta["rows"] == 2
    assert list(read_mined(path)) == [ROW, ROW]
    assert read_meta(path) == {"method": "bm25", "k": 10, "rows": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["neg.jsonl", "neg.meta.json"]


def test_positive_never_doubles_as_negative() -> None:
    with pytest.raises(ValueError, match="both positive and negative"):
        MinedQuery("q", "x", ("d1",), ("a",), ("d1",), ("a",))


def test_bad_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "neg.jsonl"
    write_mined(path, [ROW], {})
    with path.open("a") as handle:
        handle.write('{"query_id": "q2", "query": "y", "negatives": "not a list"}\n')
    rows = read_mined(path)
    assert next(rows) == ROW
    with pytest.raises(DataError, match=r"neg\.jsonl:2: 'negatives' must be a list of strings"):
        next(rows)


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    def rows() -> object:
        yield ROW
        raise RuntimeError("cancelled")

    with pytest.raises(RuntimeError):
        write_mined(tmp_path / "neg.jsonl", rows(), {})  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []
