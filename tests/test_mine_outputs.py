"""Output layouts (triplet, n-tuple, labeled list) in JSONL and Parquet, read back with
``datasets``, consumed by a real sentence-transformers loss; and the per-run stats report."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from datasets import Dataset, load_dataset
from matplotlib.image import imread
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

from hardneg.core.encoders import load_encoder
from hardneg.core.negatives import MinedQuery, read_meta, read_mined
from hardneg.miners.job import FilterReport, MinedRun
from hardneg.miners.output import training_columns, write_outputs
from hardneg.miners.stats import describe, write_stats

ROWS = (
    MinedQuery(
        query_id="q1",
        query="what do wolves eat",
        positive_ids=("wolf1", "wolf2"),
        positives=("Wolves hunt deer.", "Wolves eat elk."),
        positive_scores=(0.75, 0.5),
        negative_ids=("fox", "bear"),
        negatives=("Foxes eat rabbits.", "Bears eat berries."),
        negative_scores=(0.375, 0.25),
        method="dense",
    ),
    MinedQuery(
        query_id="q2",
        query="how do plants make sugar",
        positive_ids=("sun",),
        positives=("Plants turn sunlight into sugar.",),
        positive_scores=(1.0,),
        negative_ids=("root",),
        negatives=("Roots take up water.",),
        negative_scores=(0.5,),
        method="dense",
    ),
)
META = {"method": "dense", "model": "all-MiniLM-L6-v2", "filters": {"num_negatives": 2}}


def load(path: Path, tmp_path: Path) -> Dataset:
    builder = "json" if path.suffix == ".jsonl" else "parquet"
    dataset = load_dataset(
        builder, data_files=str(path), split="train", cache_dir=str(tmp_path / "hf")
    )
    assert isinstance(dataset, Dataset)
    return dataset


@pytest.fixture
def exports(tmp_path: Path) -> dict[str, Path]:
    result = write_outputs(tmp_path / "out", ROWS, META, num_negatives=2)
    assert result.rows == {"triplet": 2 * 2 + 1 * 1, "n-tuple": 2, "labeled-list": 2}
    assert result.left_out == {"n-tuple": 1}  # q2 has one negative: not padded, left out
    assert list(read_mined(result.mined)) == list(ROWS)
    assert read_meta(result.mined)["model"] == "all-MiniLM-L6-v2"
    return dict(result.files)


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_triplets_are_every_positive_times_every_negative(
    exports: dict[str, Path], tmp_path: Path, fmt: str
) -> None:
    dataset = load(exports[f"triplet.{fmt}"], tmp_path)
    assert dataset.column_names[:3] == ["anchor", "positive", "negative"]
    pairs = [(r["positive_id"], r["negative_id"]) for r in dataset]
    assert pairs == [
        ("wolf1", "fox"),
        ("wolf1", "bear"),
        ("wolf2", "fox"),
        ("wolf2", "bear"),
        ("sun", "root"),
    ]
    assert dataset[3]["anchor"] == "what do wolves eat"
    assert (
        dataset[3]["positive"] == "Wolves eat elk."
        and dataset[3]["negative"] == "Bears eat berries."
    )
    assert dataset[3]["positive_score"] == 0.5 and dataset[3]["negative_score"] == 0.25
    assert set(dataset["method"]) == {"dense"}


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_ntuples_hold_exactly_n_negatives(
    exports: dict[str, Path], tmp_path: Path, fmt: str
) -> None:
    dataset = load(exports[f"n-tuple.{fmt}"], tmp_path)
    assert tuple(dataset.column_names[:4]) == training_columns("n-tuple", 2)
    assert dataset["positive_id"] == ["wolf1", "wolf2"]  # q2 is short: left out
    row = dataset[1]
    assert (row["negative_1"], row["negative_2"]) == ("Foxes eat rabbits.", "Bears eat berries.")
    assert row["scores"] == [0.5, 0.375, 0.25]
    assert row["negative_ids"] == ["fox", "bear"]


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_labeled_lists_label_positives_one_and_negatives_zero(
    exports: dict[str, Path], tmp_path: Path, fmt: str
) -> None:
    dataset = load(exports[f"labeled-list.{fmt}"], tmp_path)
    assert dataset.column_names[:3] == ["query", "docs", "labels"]
    assert dataset[0]["labels"] == [1, 1, 0, 0]
    assert dataset[0]["doc_ids"] == ["wolf1", "wolf2", "fox", "bear"]
    assert dataset[1]["docs"] == ["Plants turn sunlight into sugar.", "Roots take up water."]
    assert dataset[1]["scores"] == [1.0, 0.5]


def test_parquet_files_carry_the_run_provenance(exports: dict[str, Path]) -> None:
    metadata = pq.read_schema(exports["triplet.parquet"]).metadata
    assert json.loads(metadata[b"hardneg"]) == META


@pytest.fixture(scope="module")
def minilm() -> SentenceTransformer:
    return load_encoder(max_length=64)


def test_a_sentence_transformers_loss_trains_on_the_exported_triplets(
    exports: dict[str, Path], tmp_path: Path, minilm: SentenceTransformer
) -> None:
    dataset = load(exports["triplet.parquet"], tmp_path).select_columns(
        list(training_columns("triplet", 2))
    )
    batch = dataset[:]
    loss_fn = MultipleNegativesRankingLoss(minilm)
    optimizer = torch.optim.AdamW(minilm.parameters(), lr=2e-5)
    minilm.train()
    losses = []
    for _ in range(3):
        features = [minilm.preprocess(batch[column]) for column in dataset.column_names]
        loss = loss_fn(features, torch.empty(0))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(loss.detach()))
    minilm.eval()
    assert all(torch.isfinite(torch.tensor(losses))) and losses[0] > 0
    assert losses[-1] < losses[0], losses


def test_the_ntuple_layout_feeds_the_loss_with_several_negatives(
    exports: dict[str, Path], tmp_path: Path, minilm: SentenceTransformer
) -> None:
    columns = list(training_columns("n-tuple", 2))
    dataset = load(exports["n-tuple.jsonl"], tmp_path).select_columns(columns)
    batch = dataset[:]
    features = [minilm.preprocess(batch[column]) for column in columns]
    with torch.no_grad():
        loss = MultipleNegativesRankingLoss(minilm)(features, torch.empty(0))
    assert float(loss) > 0 and torch.isfinite(loss)


def test_stats_report_counts_and_score_distributions(tmp_path: Path) -> None:
    report = FilterReport(
        num_queries=3,
        num_negatives=2,
        full=1,
        short=1,
        skipped={"too_few_negatives": 1},
        removed={"relative_margin": 4},
        skipped_ids={"too_few_negatives": ("q3",)},
        short_ids=("q2",),
    )
    run = MinedRun("dense", ROWS, report, {"model": "m"})
    qrels = {"q1": {"wolf1": 1, "wolf2": 1}, "q2": {"sun": 1}, "q3": {"x": 1}}
    json_path, png_path, stats = write_stats(tmp_path, run, qrels)
    assert json.loads(json_path.read_text()) == json.loads(json.dumps(stats))
    assert stats["negatives"] == 3 and stats["rows"] == 2
    assert "false_negative_fraction" not in stats  # judged docs are never mined: removed
    queries = stats["queries"]
    assert isinstance(queries, dict)
    assert queries["queries_skipped"] == {"too_few_negatives": 1}
    assert queries["skipped_query_ids"] == {"too_few_negatives": ["q3"]}
    scores = stats["scores"]
    assert isinstance(scores, dict)
    assert scores["positive"]["count"] == 3 and scores["positive"]["mean"] == pytest.approx(0.75)
    assert scores["negative"]["max"] == 0.5 and scores["negative"]["min"] == 0.25
    # margins: lowest positive minus each negative: 0.5-0.375, 0.5-0.25, 1.0-0.5
    assert scores["margin"]["median"] == pytest.approx(0.25)
    assert scores["margin"]["min"] == pytest.approx(0.125)
    image = imread(png_path)
    assert image.shape[0] > 100 and image.shape[1] > 100
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_describe_handles_empty_and_simple_lists() -> None:
    assert describe([])["count"] == 0 and describe([])["mean"] is None
    summary = describe([1.0, 2.0, 3.0, 4.0])
    assert (
        summary["median"] == 2.5
        and summary["p25"] == 1.75
        and summary["std"] == pytest.approx(1.118034, rel=1e-5)
    )
