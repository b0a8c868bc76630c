"""``hardneg experiment`` end to end on a small SciFact slice with real components: BM25, the
packaged MiniLM, a cross-encoder trained by the run itself, the packaged SmolLM2 writing negatives,
STAR then ADORE, and the report with its plots. Then: a rerun continues from the recorded stages,
and a corpus without training queries gets LLM-written ones first.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from hardneg.core.beir import load_qrels, load_split
from hardneg.core.bm25 import BM25Index
from hardneg.service.cli import app
from hardneg.service.commands.experiment import comparison_table
from hardneg.service.pipelines.experiment.data import split_budget
from hardneg.service.pipelines.experiment.profiles import get_profile
from hardneg.service.pipelines.experiment.run import ExperimentRequest, run_experiment
from hardneg.service.settings import Settings
from tests.conftest import write_beir

TRAIN_QUERIES, TEST_QUERIES, NEIGHBOURS, WORDS = 20, 10, 6, 60
SMALL = {
    "train_queries": 8,
    "num_negatives": 2,
    "pool_depth": 6,
    "batch_size": 4,
    "negatives_per_step": 1,
    "star_steps": 2,
    "adore_steps": 2,
    "adore_top_k": 10,
    "max_doc_length": 96,
    "eval_steps": 2,
    "reranker_queries": 8,
    "reranker_steps": 2,
    "reranker_negatives": 2,
    "reranker_max_length": 96,
    "llm_max_tokens": 24,
    "generate_passages": 24,
}


def _short(text: str) -> str:
    return " ".join(text.split()[:WORDS])


@pytest.fixture(scope="module")
def scifact_slice(tmp_path_factory: pytest.TempPathFactory, scifact_dir: Path) -> Path:
    """Train and test queries of SciFact, their positives and BM25 neighbours, texts shortened."""
    train = load_split(scifact_dir, "train")
    test = load_split(scifact_dir, "test", corpus=train.corpus)
    corpus = train.corpus
    train_ids = sorted(train.queries)[:TRAIN_QUERIES]
    test_ids = sorted(test.queries)[:TEST_QUERIES]
    index = BM25Index.build(corpus)
    texts = [train.queries[q] for q in train_ids] + [test.queries[q] for q in test_ids]
    hits = index.search(texts, train_ids + test_ids, NEIGHBOURS)
    keep = {d for q in train_ids for d in train.qrels[q]} | {
        d for q in test_ids for d in test.qrels[q]
    }
    keep |= {d for row in range(len(texts)) for d, _ in hits.hits(row)}
    docs: list[dict[str, object]] = [
        {"_id": d, "title": corpus.titles[i], "text": _short(corpus.texts[i])}
        for i, d in enumerate(corpus.ids)
        if d in keep
    ]
    queries: list[dict[str, object]] = [{"_id": q, "text": train.queries[q]} for q in train_ids] + [
        {"_id": q, "text": test.queries[q]} for q in test_ids
    ]
    folder = write_beir(
        tmp_path_factory.mktemp("slice"),
        docs,
        queries,
        [(q, d, g) for q in test_ids for d, g in test.qrels[q].items()],
        "test",
    )
    lines = ["query-id\tcorpus-id\tscore"] + [
        f"{q}\t{d}\t{g}" for q in train_ids for d, g in train.qrels[q].items()
    ]
    (folder / "qrels" / "train.tsv").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(home=tmp_path_factory.mktemp("home"))


@pytest.fixture(scope="module")
def finished(scifact_slice: Path, settings: Settings, tmp_path_factory: pytest.TempPathFactory):
    output = tmp_path_factory.mktemp("experiment") / "report"
    request = ExperimentRequest(
        data=str(scifact_slice), profile=get_profile("quick", **SMALL), seed=3
    )
    return run_experiment(request, settings, output), request, output


def test_every_method_is_mined_trained_and_scored(finished) -> None:
    result, _, output = finished
    report = json.loads((output / "report.json").read_text())
    assert report["methods"] == result.report["methods"]
    assert set(report["methods"]) == {"bm25", "dense", "cross-encoder", "llm"}
    for method, entry in report["methods"].items():
        for metric in ("ndcg@10", "recall@100", "p@10"):
            assert 0.0 <= entry[metric] <= 1.0, (method, metric)
        assert entry["star_adore"]["ndcg@10"] == entry["ndcg@10"]
        assert entry["mining"]["false_negative_fraction"] == 0.0
        assert entry["mining"]["queries"] >= 1
        assert entry["hardness"]["negative_cosine_mean"] is not None
    assert set(report["baselines"]) == {"bm25", "zero-shot"}
    assert report["budget"]["train_queries"] == SMALL["train_queries"]
    assert report["best_method"] in report["methods"]
    assert report["wall_seconds"] > 0
    for name in ("metrics.png", "scores.png", "curves.png"):
        assert (output / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = (output / "report.md").read_text()
    assert "| llm negatives |" in markdown and "What the `quick` profile trims" in markdown


def test_every_method_trains_on_the_same_budget(finished) -> None:
    _, _, output = finished
    budget = set(load_qrels(output / "data" / "qrels" / "train.tsv"))
    held_out = set(load_qrels(output / "data" / "qrels" / "reranker.tsv"))
    assert len(budget) == SMALL["train_queries"] and not budget & held_out
    for method in ("bm25", "dense", "cross-encoder", "llm"):
        rows = [json.loads(line) for line in (output / "mined" / method / "mined.jsonl").open()]
        assert {r["query_id"] for r in rows} <= budget
        assert all(len(r["negative_ids"]) <= SMALL["num_negatives"] for r in rows)
    # the LLM's negatives are written text, not corpus documents
    llm = [json.loads(line) for line in (output / "mined" / "llm" / "mined.jsonl").open()]
    assert all(d.startswith("gen:") for r in llm for d in r["negative_ids"])


def test_training_curves_span_star_then_adore(finished) -> None:
    _, _, output = finished
    curves = json.loads((output / "report.json").read_text())["curves"]
    steps = [step for step, _ in curves["bm25"]["loss"]]
    total = SMALL["star_steps"] + SMALL["adore_steps"]
    assert steps == sorted(steps) and max(steps) == total
    assert [s for s, _ in curves["bm25"]["ndcg@10"]] == [2, 4]


def test_a_rerun_continues_from_the_recorded_stages(finished, settings: Settings) -> None:
    _, request, output = finished
    stage = output / "stages" / "train-dense-adore.json"
    kept = {p.name: p.stat().st_mtime_ns for p in (output / "stages").iterdir() if p != stage}
    stage.unlink()
    (output / "report.json").unlink()
    again = run_experiment(request, settings, output)
    assert stage.is_file()
    assert {
        p.name: p.stat().st_mtime_ns for p in (output / "stages").iterdir() if p != stage
    } == kept
    # the ADORE run itself was finished on disk, so it was reused, not retrained
    assert (
        again.report["methods"]["dense"]["ndcg@10"]
        == finished[0].report["methods"]["dense"]["ndcg@10"]
    )


def test_a_corpus_without_training_queries_gets_llm_written_ones_first(
    scifact_slice: Path, settings: Settings, tmp_path: Path
) -> None:
    source = tmp_path / "no-train"
    shutil.copytree(scifact_slice, source)
    (source / "qrels" / "train.tsv").unlink()
    output = tmp_path / "report"
    profile = get_profile("quick", **SMALL | {"generate_passages": 16, "eval_steps": 0})
    request = ExperimentRequest(data=str(source), profile=profile, methods=("bm25",), seed=3)
    result = run_experiment(request, settings, output)
    assert result.report["budget"]["generated_training_queries"] is True
    generated = load_qrels(output / "generated" / "qrels" / "train.tsv")
    budget = load_qrels(output / "data" / "qrels" / "train.tsv")
    assert budget and set(budget) <= set(generated)
    # every generated query's positive is the passage it was written from, in the source corpus
    corpus_ids = {json.loads(line)["_id"] for line in (source / "corpus.jsonl").open()}
    assert all(set(docs) <= corpus_ids for docs in budget.values())
    # the test split is the source's, untouched
    assert load_qrels(output / "data" / "qrels" / "test.tsv") == load_qrels(
        source / "qrels" / "test.tsv"
    )
    assert 0.0 <= result.report["methods"]["bm25"]["ndcg@10"] <= 1.0


def test_budget_and_held_out_queries_are_disjoint_and_seeded() -> None:
    ids = [f"q{i}" for i in range(50)]
    chosen, held = split_budget(ids, 20, 10, seed=1)
    assert len(chosen) == 20 and len(held) == 10 and not set(chosen) & set(held)
    assert split_budget(ids, 20, 10, seed=1) == (chosen, held)
    assert split_budget(ids, 20, 10, seed=2) != (chosen, held)
    assert split_budget(ids, None, 10, seed=1) == (sorted(ids), [])


def test_the_cli_refuses_to_continue_an_experiment_with_other_settings(
    finished, settings: Settings, scifact_slice: Path
) -> None:
    _, _, output = finished
    before = sorted(p.name for p in (output / "stages").iterdir())
    result = CliRunner().invoke(
        app,
        [
            "experiment",
            "--data",
            str(scifact_slice),
            "--output",
            str(output),
            "--home",
            str(settings.home),
            "--seed",
            "3",
        ],
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.exit_code == 2, result.output
    assert "other settings (profile)" in " ".join(result.output.split())
    assert sorted(p.name for p in (output / "stages").iterdir()) == before


def test_the_comparison_table_lists_baselines_and_methods(finished) -> None:
    result, _, _ = finished
    console = Console(width=200, record=True)
    console.print(comparison_table(result.report))
    text = console.export_text()
    for label in ("BM25 (no training)", "zero-shot", "bm25 negatives", "llm negatives"):
        assert label in text
    ndcg = result.report["methods"]["cross-encoder"]["ndcg@10"]
    assert f"{ndcg:.4f}" in text


def test_unknown_methods_and_profiles_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown or no methods"):
        ExperimentRequest(methods=("bm25", "tf-idf"))
    with pytest.raises(ValueError, match="unknown profile"):
        get_profile("huge")
    with pytest.raises(ValueError, match="unknown profile field"):
        get_profile("quick", steps=3)
