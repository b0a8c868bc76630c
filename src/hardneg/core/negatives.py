"""The mined-negatives file: the contract between miners (who write it) and trainers (who read it).

One JSON object per line, flat columns so ``datasets.load_dataset("json", ...)`` reads it::

    {"query_id": "q1", "query": "...",
     "positive_ids": ["d2"], "positives": ["..."], "positive_scores": [0.83],
     "negative_ids": ["d7", "gen:3fa2"], "negatives": ["...", "..."],
     "negative_scores": [0.61, null],
     "method": "bm25"}

Scores are the mining scorer's (null where there is none, e.g. a generated passage). Ids starting
with ``gen:`` are texts an LLM wrote, not corpus documents. Run-level provenance (model,
parameters, counts) sits beside the file in ``<name>.meta.json``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hardneg.core.atomic import atomic_path
from hardneg.core.beir import DataError

GENERATED_PREFIX = "gen:"


@dataclass(frozen=True)
class QueryPositives:
    """A query with its judged positives (ids and texts), before any negative is found."""

    query_id: str
    query: str
    positive_ids: tuple[str, ...]
    positives: tuple[str, ...]


@dataclass(frozen=True)
class MinedQuery(QueryPositives):
    """A query, its positives and its mined negatives (and the scores a teacher gave them)."""

    negative_ids: tuple[str, ...]
    negatives: tuple[str, ...]
    positive_scores: tuple[float | None, ...] = ()
    negative_scores: tuple[float | None, ...] = ()
    method: str = ""

    def __post_init__(self) -> None:
        if len(self.positive_ids) != len(self.positives):
            raise ValueError(f"{self.query_id}: positive ids and texts differ in length")
        if len(self.negative_ids) != len(self.negatives):
            raise ValueError(f"{self.query_id}: negative ids and texts differ in length")
        if self.negative_scores and len(self.negative_scores) != len(self.negatives):
            raise ValueError(f"{self.query_id}: negative scores and texts differ in length")
        if self.positive_scores and len(self.positive_scores) != len(self.positives):
            raise ValueError(f"{self.query_id}: positive scores and texts differ in length")
        overlap = set(self.positive_ids) & set(self.negative_ids)
        if overlap:
            raise ValueError(f"{self.query_id}: {sorted(overlap)} are both positive and negative")

    def to_json(self) -> dict[str, object]:
        row = asdict(self)
        return {
            key: list(value) if isinstance(value, tuple) else value for key, value in row.items()
        }

    @classmethod
    def from_json(cls, row: Mapping[str, object]) -> MinedQuery:
        def strings(name: str) -> tuple[str, ...]:
            value = row.get(name, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"{name!r} must be a list of strings")
            return tuple(value)

        def scores(name: str) -> tuple[float | None, ...]:
            value = row.get(name) or []
            if not isinstance(value, list):
                raise ValueError(f"{name!r} must be a list")
            return tuple(None if v is None else float(v) for v in value)

        query_id, query = row.get("query_id"), row.get("query")
        if not isinstance(query_id, str) or not isinstance(query, str):
            raise ValueError("'query_id' and 'query' must be strings")
        return cls(
            query_id=query_id,
            query=query,
            positive_ids=strings("positive_ids"),
            positives=strings("positives"),
            negative_ids=strings("negative_ids"),
            negatives=strings("negatives"),
            positive_scores=scores("positive_scores"),
            negative_scores=scores("negative_scores"),
            method=str(row.get("method", "")),
        )


@dataclass(frozen=True)
class MinedFile:
    path: Path
    meta: Mapping[str, object] = field(default_factory=dict)

    @property
    def meta_path(self) -> Path:
        return meta_path_for(self.path)


def meta_path_for(path: Path) -> Path:
    return path.with_name(path.name.removesuffix(".jsonl") + ".meta.json")


def write_mined(path: Path, rows: Iterable[MinedQuery], meta: Mapping[str, object]) -> MinedFile:
    """Write rows as JSONL and the provenance beside it, each atomically."""
    count = 0
    with atomic_path(path) as temp, temp.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row.to_json(), ensure_ascii=False) + "\n")
            count += 1
    full_meta = dict(meta) | {"rows": count}
    with atomic_path(meta_path_for(path)) as temp:
        temp.write_text(json.dumps(full_meta, indent=2, default=str))
    return MinedFile(path, full_meta)


def read_mined(path: Path) -> Iterator[MinedQuery]:
    """Stream rows back; a bad line raises DataError naming the file and line."""
    try:
        handle = path.open("r", encoding="utf-8")
    except FileNotFoundError:
        raise DataError(path, None, "file not found") from None
    with handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield MinedQuery.from_json(json.loads(line))
            except (json.JSONDecodeError, ValueError, TypeError) as exc:
                raise DataError(path, number, str(exc)) from None


def read_meta(path: Path) -> dict[str, object]:
    meta_file = meta_path_for(path)
    return json.loads(meta_file.read_text()) if meta_file.is_file() else {}
