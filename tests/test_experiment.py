"""``hardneg experiment`` end to end on a small SciFact slice with real components: BM25, the
packaged MiniLM, a cross-encoder trained by the run itself, the packaged SmolLM2 writing negatives,
the control arm, two seeds of "STAR, frozen documents" then ADORE, the paired statistics and the
report. The test qrels are unreadable until every model is trained; a rerun continues from the
recorded stages; generated queries replace the train split on request.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from rich.console import Console
from typer.testing import CliRunner

from hardneg.core.beir import DataError, load_qrels, load_split
from hardneg.core.bm25 import BM25Index
from hardneg.core.negatives import read_meta, read_mined
from hardneg.service.cli import app
from hardneg.service.commands.experiment import comparison_table
from hardneg.service.pipelines.context import PipelineContext
from hardneg.service.pipelines.experiment import run as experiment_run
from hardneg.service.pipelines.experiment.data import split_roles
from hardneg.service.pipelines.experiment.profiles import get_profile
from hardneg.service.pipelines.experiment.request import ExperimentSpec
from hardneg.service.pipelines.experiment.run import run_experiment
from hardneg.service.settings import Settings
from tests.conftest import write_beir

TRAIN_QUERIES, TEST_QUERIES, NEIGHBOURS, WORDS = 20, 10, 6, 60
SMALL = {
    "train_queries": 8,
    "val_queries": 4,
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


SEEDS = 2
ARMS = {"none", "bm25", "dense", "cross-encoder", "llm"}


@pytest.fixture(scope="module")
def finished(scifact_slice: Path, settings: Settings, tmp_path_factory: pytest.TempPathFactory):
    """The run, made in two invocations: first with the test qrels unreadable (it trains every
    arm, then stops at the first test-scoring stage), then with them restored."""
    source = tmp_path_factory.mktemp("source") / "slice"
    shutil.copytree(scifact_slice, source)
    test_qrels = source / "qrels" / "test.tsv"
    kept = test_qrels.read_bytes()
    test_qrels.write_text("this is not a qrels file\n")
    output = tmp_path_factory.mktemp("experiment") / "report"
    request = ExperimentSpec(data=str(source), overrides=SMALL, seed=3, seeds=SEEDS)
    with pytest.raises(DataError, match=r"test\.tsv"):
        run_experiment(request, PipelineContext(settings, output))
    trained_first = sorted(p.name for p in (output / "stages").glob("train-*.json"))
    test_stages = sorted(p.name for p in (output / "stages").glob("test-*.json"))
    test_qrels.write_bytes(kept)
    result = run_experiment(request, PipelineContext(settings, output))
    return result, request, output, {"trained": trained_first, "tested": test_stages}


def test_training_never_reads_the_test_split(finished) -> None:
    _, _, _, first = finished
    # every arm and seed trained both stages while the test qrels were unreadable
    assert len(first["trained"]) == len(ARMS) * SEEDS * 2
    assert first["tested"] == []


def test_every_arm_is_trained_with_repeats_and_compared_to_the_control(finished) -> None:
    result, _, output, _ = finished
    report = json.loads((output / "report.json").read_text())
    assert report["methods"] == result.report["methods"]
    assert set(report["methods"]) == ARMS
    trained = {entry["queries_trained"] for entry in report["methods"].values()}
    assert trained == {SMALL["train_queries"]}  # equal across arms
    for arm, entry in report["methods"].items():
        for metric in ("ndcg@10", "recall@100", "p@10"):
            summary = entry[metric]
            assert len(summary["seeds"]) == SEEDS, (arm, metric)
            assert 0.0 <= summary["mean"] <= 1.0 and summary["std"] >= 0.0
        assert len(entry["adore"]["ndcg@10"]["seeds"]) == SEEDS
        if arm == "none":
            assert entry["vs_control"] is None and entry["mining"] is None
            continue
        versus = entry["vs_control"]
        assert versus["vs"] == "none" and 0.0 <= versus["p_holm"] <= 1.0
        low, high = versus["ci95"]
        assert low <= versus["delta"] <= high
        assert entry["mining"]["queries_with_negatives"] >= 1
        assert entry["hardness"]["negative_cosine_mean"] is not None
    assert report["best_method"] is None or report["best_method"] in report["methods"]
    assert report["top_arm"] in report["indistinguishable"]
    assert set(report["baselines"]) == {"bm25", "zero-shot"}
    assert report["budget"]["train_queries"] == SMALL["train_queries"]
    assert report["budget"]["seeds"] == SEEDS
    assert report["stages"]["comparison"].startswith("STAR, frozen documents")
    assert "does not read" in report["stages"]["second"]
    assert report["wall_seconds"] > 0
    for name in ("metrics.png", "scores.png", "curves.png"):
        assert (output / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = (output / "report.md").read_text()
    assert "| none |" in markdown and "What the `quick` profile trims" in markdown
    assert "STAR, frozen documents" in markdown


def test_every_arm_trains_on_the_same_queries_in_the_same_order(finished) -> None:
    _, _, output, _ = finished
    budget = sorted(load_qrels(output / "data" / "qrels" / "train.tsv"))
    orders = {}
    for arm in ARMS:
        rows = [json.loads(line) for line in (output / "arms" / f"{arm}.jsonl").open()]
        orders[arm] = [r["query_id"] for r in rows]
        assert all(len(r["negative_ids"]) <= SMALL["num_negatives"] for r in rows)
        if arm == "none":
            assert all(not r["negative_ids"] for r in rows)
    assert all(order == budget for order in orders.values())
    report = json.loads((output / "report.json").read_text())
    for arm, entry in report["methods"].items():
        assert sum(entry["negatives_histogram"].values()) == len(budget), arm
    assert report["methods"]["none"]["negatives_histogram"] == {"0": len(budget)}
    # the LLM's negatives are written text, not corpus documents
    llm = [json.loads(line) for line in (output / "arms" / "llm.jsonl").open()]
    assert all(d.startswith("gen:") for r in llm for d in r["negative_ids"])


def test_split_roles_are_disjoint_and_training_curves_are_on_validation(finished) -> None:
    _, _, output, _ = finished
    qrels = output / "data" / "qrels"
    budget, val = set(load_qrels(qrels / "train.tsv")), set(load_qrels(qrels / "val.tsv"))
    held_out = set(load_qrels(qrels / "reranker.tsv"))
    assert val and not budget & val and not budget & held_out and not val & held_out
    assert (qrels / "test.tsv").is_symlink()
    for history in (output / "models").rglob("metrics.jsonl"):
        evals = [json.loads(line) for line in history.open() if '"eval"' in line]
        assert evals and {e["split"] for e in evals} == {"val"}, history
    report = json.loads((output / "report.json").read_text())
    assert set(report["splits"]) == {"train", "val", "reranker", "probe", "test"}
    steps = [step for step, _ in report["curves"]["bm25"]["loss"]]
    assert steps == sorted(steps) and max(steps) == SMALL["star_steps"] + SMALL["adore_steps"]


def test_the_false_negative_probe_is_reported_per_source(finished) -> None:
    result, _, output, _ = finished
    probe = result.report["false_negative_probe"]
    assert set(probe) == ARMS - {"none"}
    hidden = json.loads((output / "data" / "probe-hidden.json").read_text())
    for method in ("bm25", "dense", "cross-encoder"):
        assert probe[method]["hidden_positives"] == len(hidden)
    assert probe["llm"]["rate"] is None and "never corpus documents" in probe["llm"]["note"]


def test_a_rerun_continues_from_the_recorded_stages(finished, settings: Settings) -> None:
    _, request, output, _ = finished
    stage = output / "stages" / "test-dense-s4-star_adore.json"
    kept = {p.name: p.stat().st_mtime_ns for p in (output / "stages").iterdir() if p != stage}
    stage.unlink()
    (output / "report.json").unlink()
    again = run_experiment(request, PipelineContext(settings, output))
    assert stage.is_file()
    assert {
        p.name: p.stat().st_mtime_ns for p in (output / "stages").iterdir() if p != stage
    } == kept
    assert (
        again.report["methods"]["dense"]["adore"] == finished[0].report["methods"]["dense"]["adore"]
    )


def test_generated_queries_train_every_arm_even_with_a_train_split(
    scifact_slice: Path, settings: Settings, tmp_path: Path
) -> None:
    output = tmp_path / "report"
    small = SMALL | {"generate_passages": 24, "eval_steps": 0, "val_queries": 2}
    request = ExperimentSpec(
        data=str(scifact_slice), overrides=small, methods=("bm25",), seed=3, seeds=1,
        queries="generated",
    )  # fmt: skip
    result = run_experiment(request, PipelineContext(settings, output))
    assert result.report["queries"] == "generated"
    assert result.report["budget"]["generated_training_queries"] is True
    generated = load_qrels(output / "generated" / "qrels" / "train.tsv")
    budget = load_qrels(output / "data" / "qrels" / "train.tsv")
    assert budget and set(budget) <= set(generated)
    assert all(q.startswith("gen:") for q in budget)
    # the probe uses the human training queries, which no arm trained on
    hidden = json.loads((output / "data" / "probe-hidden.json").read_text())
    assert all(not q.startswith("gen:") for q in hidden)
    # the test split is the source's, untouched
    assert load_qrels(output / "data" / "qrels" / "test.tsv") == load_qrels(
        scifact_slice / "qrels" / "test.tsv"
    )
    assert set(result.report["methods"]) == {"none", "bm25"}
    assert f"{len(budget)} LLM-written queries" in result.report["splits"]["train"]


def test_a_corpus_without_training_queries_gets_llm_written_ones(
    scifact_slice: Path, settings: Settings, tmp_path: Path
) -> None:
    source = tmp_path / "no-train"
    shutil.copytree(scifact_slice, source)
    (source / "qrels" / "train.tsv").unlink()
    small = SMALL | {"generate_passages": 16, "eval_steps": 0}
    request = ExperimentSpec(data=str(source), overrides=small, methods=("bm25",), seed=3, seeds=1)
    result = run_experiment(request, PipelineContext(settings, tmp_path / "report"))
    assert result.report["budget"]["generated_training_queries"] is True
    assert result.report["false_negative_probe"]["bm25"]["hidden_positives"] >= 0


def test_the_gpl_arm_trains_margin_mse_on_teacher_scores_of_the_dense_negatives(
    scifact_slice: Path, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "gpl" not in ExperimentSpec().methods  # opt-in: the default run is unchanged
    mined: list[tuple[str, str]] = []  # (method, split) of every mining run
    trained: list[str] = []  # the trainers this process ran (arms may train in workers)
    real_mining, real_train = experiment_run.run_mining, experiment_run.train

    def mining(spec: Any, *args: Any) -> Any:
        mined.append((spec.method, spec.split))
        return real_mining(spec, *args)

    def training(kind: str, *args: Any) -> Any:
        trained.append(kind)
        return real_train(kind, *args)

    monkeypatch.setattr(experiment_run, "run_mining", mining)
    monkeypatch.setattr(experiment_run, "train", training)
    output = tmp_path / "report"
    methods = ("gpl", "dense", "cross-encoder")  # gpl first: the dense arm reuses its mining
    small = SMALL | {"eval_steps": 0}
    request = ExperimentSpec(data=str(scifact_slice), overrides=small, methods=methods, seeds=1)
    report = run_experiment(request, PipelineContext(settings, output)).report
    # the dense negatives are mined (and probed) once for both arms; one cross-encoder, trained once
    hidden = json.loads((output / "data" / "probe-hidden.json").read_text())
    splits = ("train", "probe") if hidden else ("train",)  # no hidden positive: nothing to mine
    assert sorted(mined) == sorted(
        [("bm25", "reranker")] + [(m, s) for m in methods[1:] for s in splits]
    )
    assert trained.count("reranker") == 1
    teacher = str(output / "reranker" / "model")
    assert report["cross_encoder"]["model"] == teacher
    gpl, dense = (list(read_mined(output / "arms" / f"{arm}.jsonl")) for arm in ("gpl", "dense"))
    assert [(r.query_id, r.negative_ids) for r in gpl] == [
        (r.query_id, r.negative_ids) for r in dense
    ]
    assert any(r.negative_ids for r in gpl)
    for row in gpl:  # every positive and negative carries its teacher score
        assert len(row.positive_scores) == len(row.positive_ids) and None not in row.positive_scores
        assert len(row.negative_scores) == len(row.negative_ids) and None not in row.negative_scores
    assert read_meta(output / "arms" / "gpl.jsonl")["teacher"]["cross_encoder"] == teacher
    # stage one ran margin-mse with the dense arm's STAR settings, then ADORE from its model
    first, adore, star = (
        json.loads((output / "stages" / f"train-{name}.json").read_text())["summary"]
        for name in ("gpl-s13-margin-mse", "gpl-s13-adore", "dense-s13-star")
    )
    assert (first["trainer"], adore["trainer"], star["trainer"]) == ("margin-mse", "adore", "star")
    assert first["steps"] == star["steps"] == SMALL["star_steps"]
    differ = {(s, k) for s, kv in first["config"].items() for k, v in kv.items()
              if star["config"][s][k] != v}  # fmt: skip
    assert differ == {("data", "negatives"), ("train", "output_dir")}  # the same recipe
    assert Path(adore["config"]["model"]["model"]).name == "margin_mse"
    # the report names what ran
    honest = "MarginMSE on cross-encoder margins (GPL-style), frozen documents"
    entry = report["methods"]["gpl"]
    assert entry["comparison_stage"] == honest and entry["negatives_from"] == "dense"
    assert report["methods"]["dense"]["comparison_stage"] == "STAR, frozen documents"
    assert f"the gpl arm instead: {honest}" in report["stages"]["comparison"]
    trims = " ".join(report["trims"])
    assert "gpl arm is GPL-style" in trims and "scores the gpl arm's pairs" in trims
    probe = report["false_negative_probe"]
    assert probe["gpl"]["returned"] == probe["dense"]["returned"]
    assert "the dense miner's negatives" in probe["gpl"]["note"]
    markdown = (output / "report.md").read_text()
    assert "| gpl |" in markdown and honest in markdown


def test_query_roles_are_disjoint_and_seeded() -> None:
    ids = [f"q{i}" for i in range(50)]
    roles = split_roles(ids, 20, 5, 10, seed=1)
    assert (len(roles.train), len(roles.val), len(roles.reranker)) == (20, 5, 10)
    assert not set(roles.train) & set(roles.val) and not set(roles.train) & set(roles.reranker)
    assert split_roles(ids, 20, 5, 10, seed=1) == roles
    assert split_roles(ids, 20, 5, 10, seed=2) != roles
    assert len(split_roles(ids, None, 30, 10, seed=1).val) == 10  # at most a fifth


def test_the_cli_refuses_to_continue_an_experiment_with_other_settings(
    finished, settings: Settings
) -> None:
    _, request, output, _ = finished
    before = sorted(p.name for p in (output / "stages").iterdir())
    result = CliRunner().invoke(
        app,
        [
            "experiment",
            "--data",
            request.data,
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
    assert "other settings (profile" in " ".join(result.output.split())
    assert sorted(p.name for p in (output / "stages").iterdir()) == before


def test_the_comparison_table_fits_80_columns(finished) -> None:
    result, _, _, _ = finished
    console = Console(width=80, record=True)
    console.print(comparison_table(result.report))
    text = console.export_text()
    assert "…" not in text
    assert all(len(line) <= 80 for line in text.splitlines())
    for label in ("BM25", "zero-shot", "none", "bm25", "cross-encoder", "Δ none"):
        assert label in text
    ndcg = result.report["methods"]["cross-encoder"]["ndcg@10"]["mean"]
    assert f"{ndcg:.3f}" in text


def test_unknown_methods_and_profiles_are_refused() -> None:
    with pytest.raises(ValidationError, match="methods"):
        ExperimentSpec(methods=("bm25", "tf-idf"))
    with pytest.raises(ValidationError, match="profile"):
        ExperimentSpec(profile="huge")
    with pytest.raises(ValueError, match="unknown profile"):
        get_profile("huge")
    with pytest.raises(ValueError, match="unknown profile field"):
        get_profile("quick", steps=3)


def test_few_queries_are_shared_between_the_budget_and_the_reranker() -> None:
    ids = [f"q{i}" for i in range(100)]
    roles = split_roles(ids, 512, 100, 297, seed=1)  # the quick profile's counts, 100 queries
    assert len(roles.val) == 20
    assert len(roles.train) == round(80 * 512 / 809) and len(roles.reranker) == 80 - 51
    plenty = split_roles([f"q{i}" for i in range(900)], 512, 100, 297, seed=1)
    assert len(plenty.train) == 512 and len(plenty.reranker) == 288  # the budget comes first
