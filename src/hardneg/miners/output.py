"""Write a mining run: core's mined file, plus the layouts sentence-transformers losses take.

Layouts (one file per layout and format, JSONL and Parquet, each readable with
``datasets.load_dataset("json" | "parquet", data_files=...)``):

- ``triplet``: one row per (query, positive, negative): ``anchor, positive, negative`` (e.g.
  MultipleNegativesRankingLoss, TripletLoss);
- ``n-tuple``: one row per (query, positive) with exactly ``n`` negatives:
  ``query, positive, negative_1 .. negative_n`` (MultipleNegativesRankingLoss with several
  negatives); queries with fewer negatives are left out and counted;
- ``labeled-list``: one row per query: ``query, docs, labels`` (positives labelled 1, negatives
  0; list-wise cross-encoder losses such as ListNet or LambdaLoss).

Every row also carries ids, scores and the method. The training columns come first; pick them
with ``dataset.select_columns(training_columns(layout, n))`` before handing a dataset to a
trainer. Run-level provenance goes to the Parquet schema metadata (key ``hardneg``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from hardneg.core.atomic import atomic_path
from hardneg.core.negatives import MinedQuery, write_mined
from hardneg.core.progress import Progress, no_progress
from hardneg.miners.spec import FORMATS, LAYOUTS, MINED_FILE, Format, Layout

logger = logging.getLogger(__name__)


_FILE_STEM = {"triplet": "triplet", "n-tuple": "ntuple", "labeled-list": "labeled_list"}

Row = dict[str, object]


def training_columns(layout: Layout, num_negatives: int) -> tuple[str, ...]:
    """The columns a sentence-transformers loss takes, in order."""
    if layout == "triplet":
        return ("anchor", "positive", "negative")
    if layout == "n-tuple":
        return ("query", "positive", *(f"negative_{i}" for i in range(1, num_negatives + 1)))
    return ("query", "docs", "labels")


def _positives(row: MinedQuery) -> Iterator[tuple[str, str, float | None]]:
    scores = row.positive_scores or (None,) * len(row.positives)
    yield from zip(row.positive_ids, row.positives, scores, strict=True)


def _negatives(row: MinedQuery) -> list[tuple[str, str, float | None]]:
    scores = row.negative_scores or (None,) * len(row.negatives)
    return list(zip(row.negative_ids, row.negatives, scores, strict=True))


def triplet_rows(rows: Iterable[MinedQuery]) -> Iterator[Row]:
    for row in rows:
        negatives = _negatives(row)
        for positive_id, positive, positive_score in _positives(row):
            for negative_id, negative, negative_score in negatives:
                yield {
                    "anchor": row.query,
                    "positive": positive,
                    "negative": negative,
                    "query_id": row.query_id,
                    "positive_id": positive_id,
                    "negative_id": negative_id,
                    "positive_score": positive_score,
                    "negative_score": negative_score,
                    "method": row.method,
                }


def ntuple_rows(rows: Iterable[MinedQuery], num_negatives: int) -> Iterator[Row]:
    """Rows with exactly ``num_negatives`` negatives; shorter queries are not padded."""
    for row in rows:
        negatives = _negatives(row)[:num_negatives]
        if len(negatives) < num_negatives:
            continue
        for positive_id, positive, positive_score in _positives(row):
            out: Row = {"query": row.query, "positive": positive}
            out |= {f"negative_{i}": text for i, (_, text, _) in enumerate(negatives, start=1)}
            out |= {
                "scores": [positive_score, *(score for _, _, score in negatives)],
                "query_id": row.query_id,
                "positive_id": positive_id,
                "negative_ids": [doc_id for doc_id, _, _ in negatives],
                "method": row.method,
            }
            yield out


def labeled_list_rows(rows: Iterable[MinedQuery]) -> Iterator[Row]:
    for row in rows:
        docs = [*_positives(row), *_negatives(row)]
        yield {
            "query": row.query,
            "docs": [text for _, text, _ in docs],
            "labels": [1] * len(row.positives) + [0] * len(row.negatives),
            "scores": [score for _, _, score in docs],
            "query_id": row.query_id,
            "doc_ids": [doc_id for doc_id, _, _ in docs],
            "method": row.method,
        }


def _schema(layout: Layout, num_negatives: int) -> pa.Schema:
    text, score = pa.string(), pa.float32()
    fields: list[tuple[str, pa.DataType]]
    if layout == "triplet":
        fields = [(c, text) for c in training_columns(layout, num_negatives)]
        fields += [(c, text) for c in ("query_id", "positive_id", "negative_id")]
        fields += [("positive_score", score), ("negative_score", score)]
    elif layout == "n-tuple":
        fields = [(c, text) for c in training_columns(layout, num_negatives)]
        fields += [("scores", pa.list_(score)), ("query_id", text), ("positive_id", text)]
        fields += [("negative_ids", pa.list_(text))]
    else:
        fields = [("query", text), ("docs", pa.list_(text)), ("labels", pa.list_(pa.int64()))]
        fields += [("scores", pa.list_(score)), ("query_id", text), ("doc_ids", pa.list_(text))]
    return pa.schema([*fields, ("method", text)])


def layout_rows(layout: Layout, rows: Sequence[MinedQuery], num_negatives: int) -> list[Row]:
    if layout == "triplet":
        return list(triplet_rows(rows))
    if layout == "n-tuple":
        return list(ntuple_rows(rows, num_negatives))
    return list(labeled_list_rows(rows))


def write_jsonl(path: Path, rows: Iterable[Row]) -> None:
    with atomic_path(path) as temp, temp.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_parquet(
    path: Path, rows: list[Row], schema: pa.Schema, meta: Mapping[str, object]
) -> None:
    metadata = {b"hardneg": json.dumps(meta, default=str).encode()}
    table = pa.Table.from_pylist(rows, schema=schema.with_metadata(metadata))
    with atomic_path(path) as temp:
        pq.write_table(table, temp)


@dataclass(frozen=True)
class Exports:
    mined: Path
    files: Mapping[str, Path]  # "<layout>.<format>" -> path
    rows: Mapping[str, int]  # layout -> rows written
    left_out: Mapping[str, int]  # layout -> queries left out (n-tuple: too few negatives)


def write_outputs(
    folder: Path,
    rows: Sequence[MinedQuery],
    meta: Mapping[str, object],
    num_negatives: int,
    layouts: Sequence[Layout] = LAYOUTS,
    formats: Sequence[Format] = FORMATS,
    progress: Progress = no_progress,
) -> Exports:
    """Write the mined file and every (layout, format) pair into ``folder``."""
    total = 1 + len(layouts) * len(formats)
    mined = write_mined(folder / MINED_FILE, rows, meta).path
    progress(1, total, "writing outputs")
    files: dict[str, Path] = {}
    counts: dict[str, int] = {}
    left_out: dict[str, int] = {}
    for layout in layouts:
        out_rows = layout_rows(layout, rows, num_negatives)
        counts[layout] = len(out_rows)
        if layout == "n-tuple":
            left_out[layout] = sum(1 for r in rows if len(r.negatives) < num_negatives)
        for fmt in formats:
            path = folder / f"{_FILE_STEM[layout]}.{fmt}"
            if fmt == "jsonl":
                write_jsonl(path, out_rows)
            else:
                write_parquet(path, out_rows, _schema(layout, num_negatives), meta)
            files[f"{layout}.{fmt}"] = path
            progress(1 + len(files), total, "writing outputs")
    return Exports(mined, files, counts, left_out)
