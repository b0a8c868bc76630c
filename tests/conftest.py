from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

# The suite's expected numbers are torch fp32 ones, and each test's fresh data directory would
# export the int8 encoder again: the service's encoder backend stays torch here unless set.
# tests/test_encoder_backends.py runs the exported backends and the CPU default explicitly.
os.environ.setdefault("HARDNEG_ENCODER_BACKEND", "torch")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SCIFACT = SHARED / "data" / "beir" / "scifact"


@pytest.fixture(scope="session")
def scifact_dir() -> Path:
    if not (SCIFACT / "corpus.jsonl.gz").is_file():
        pytest.fail(f"SciFact is expected at {SCIFACT} (the shared data folder)")
    return SCIFACT


TINY_DOCS = [
    {"_id": "d1", "title": "Cats", "text": "Cats are small domesticated carnivorous mammals."},
    {"_id": "d2", "title": "Dogs", "text": "Dogs are loyal domesticated descendants of wolves."},
    {
        "_id": "d3",
        "title": "Photosynthesis",
        "text": "Plants turn sunlight, water and CO2 into sugar.",
    },
    {
        "_id": "d4",
        "title": "Volcanoes",
        "text": "Magma erupts through vents in the crust of the earth.",
    },
    {
        "_id": "d5",
        "title": "Wolves",
        "text": "Grey wolves hunt in packs across the northern forests.",
    },
]
TINY_QUERIES = [
    {"_id": "q1", "text": "which animals descend from wolves"},
    {"_id": "q2", "text": "how do plants make sugar from sunlight"},
    {"_id": "q3", "text": "what comes out of a volcano"},
]
TINY_QRELS = [("q1", "d2", 1), ("q2", "d3", 1), ("q3", "d4", 2)]


def write_beir(
    folder: Path,
    docs: list[dict[str, object]] = TINY_DOCS,
    queries: list[dict[str, object]] = TINY_QUERIES,
    qrels: list[tuple[str, str, int]] = TINY_QRELS,
    split: str = "test",
) -> Path:
    """Write a BEIR folder; the fixtures are never mutated."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (folder / "qrels").mkdir(exist_ok=True)
    lines = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t{s}" for q, d, s in qrels]
    (folder / "qrels" / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture
def tiny_beir(tmp_path: Path) -> Path:
    return write_beir(tmp_path / "tiny")
