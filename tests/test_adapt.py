"""``adapt``: corpus only → generated queries → negatives → teacher scores → MarginMSE, with the
validation slice choosing the checkpoint and the do-no-harm rule. Real BM25, MiniLM, training
and HTTP; the LLM is a scripted OpenAI-compatible endpoint (a fake of a paid API)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from hardneg.core.beir import DataError, load_qrels
from hardneg.core.spec import build_spec, read_spec_file
from hardneg.miners.llm.backends import BackendConfig
from hardneg.miners.llm.parsing import DropReport, split_questions
from hardneg.miners.llm.queries import GeneratedQuery
from hardneg.miners.llm.training_queries import (
    LOW_SCORE,
    few_shot_template,
    keep_top_share,
    pick_demos,
    spread_positions,
)
from hardneg.service.jobs.registry import KINDS
from hardneg.service.pipelines.adapt.data import split_by_passage
from hardneg.service.pipelines.adapt.run import run_adapt
from hardneg.service.pipelines.adapt.spec import AdaptSpec
from hardneg.service.pipelines.context import PipelineContext
from hardneg.service.settings import Settings
from tests.conftest import write_beir
from tests.test_llm_fakes import Reply, fake_openai, user_text

TOPICS = [
    ("wolves", "grey wolves hunt elk in packs across the northern forests"),
    ("volcano", "magma rises through the crust and erupts as lava and ash"),
    ("photosynthesis", "green leaves turn sunlight water and carbon dioxide into sugar"),
    ("tides", "the moon's gravity pulls the oceans into high and low tides"),
    ("glaciers", "glaciers carve valleys as slow rivers of compacted ice"),
    ("bees", "honey bees dance to tell the hive where flowers bloom"),
    ("comets", "comets grow bright tails of dust when they pass near the sun"),
    ("coral", "coral reefs are built by tiny polyps living with algae"),
    ("deserts", "cacti store water in thick stems to survive desert droughts"),
    ("owls", "owls hunt mice at night with silent feathers and sharp hearing"),
    ("rust", "iron rusts when oxygen and water attack its surface"),
    ("lightning", "lightning is a giant spark between charged clouds and ground"),
]
DOCS = [
    {"_id": f"d{i}", "title": title, "text": f"{text}. {title} are studied by scientists."}
    for i, (title, text) in enumerate(TOPICS)
]


def responder(payload: dict[str, object]) -> Reply:
    """Queries from the last passage in the prompt: its content words, as questions, one per
    line (two of them when a list was asked for)."""
    passage = user_text(payload).rsplit("Text:", 1)[-1].split("\n\nWrite")[0]
    words = [w for w in re.findall(r"[a-z']+", passage.lower()) if len(w) > 4][:5]
    seed = int(payload.get("seed") or 0)
    first = f"what do {' '.join(words[seed % 2 :])} mean?"
    if "one per line" not in user_text(payload):
        return Reply(content=first)
    return Reply(content=f"{first}\nwhy does {' '.join(words[:2])} matter?")


def _spec(url: str, **spec: object) -> AdaptSpec:
    base: dict[str, object] = {
        "queries": {
            "passages": 12,
            "per_passage": 2,
            "per_call": 2,
            "bootstrap_passages": 2,
            "keep_share": 0.8,
        },
        "train": {
            "steps": 4,
            "eval_steps": 2,
            "batch_size": 4,
            "num_negatives": 2,
            "negatives_per_step": 1,
            "max_doc_length": 32,
            "val_share": 0.25,
        },
    }
    llm = BackendConfig(backend="openai", model="scripted", base_url=url, api_key_env=None)
    return AdaptSpec.model_validate(base | spec | {"llm": llm})


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    # a test split exists, as in the bench: adapt must never read it
    return write_beir(tmp_path / "beir", DOCS, [{"_id": "t1", "text": "x"}], [("t1", "d0", 1)])


def test_adapt_runs_end_to_end_and_resumes(corpus: Path, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    output = tmp_path / "run"
    with fake_openai(responder) as server:
        spec = _spec(server.url)
        result = run_adapt(spec, str(corpus), PipelineContext(settings, output))
        calls = len(server.requests)
        report = result.report
        # calls: 2 bootstrap passages x 1, then 12 passages x 2, each answered with a list of
        # two questions: 48 generated; the kept share is from the counts
        queries = report["queries"]
        assert queries["generated"] == 48 and calls == 26
        assert queries["kept"] + sum(queries["dropped"].values()) == queries["generated"]
        assert queries["kept_share"] == pytest.approx(queries["kept"] / 48, abs=1e-4)
        assert report["queries"]["prompt"]["examples_from"] == "bootstrap"
        assert queries["dropped"].get(LOW_SCORE, 0) >= 1  # the score filter kept the top 80%
        assert report["queries"]["prompt"]["name"] == "few-shot-query"
        # train and validation queries come from disjoint passages; no test query is used
        train = load_qrels(output / "data" / "qrels" / "train.tsv")
        val = load_qrels(output / "data" / "qrels" / "dev.tsv")
        assert train and val and not set(train) & set(val)
        train_docs = {d for docs in train.values() for d in docs}
        assert not train_docs & {d for docs in val.values() for d in docs}
        assert not (output / "data" / "qrels" / "test.tsv").exists()
        # the decision follows the validation figures
        validation = report["validation"]
        beats = validation["chosen_checkpoint"] > validation["base"]
        assert result.adapted == beats
        assert result.model == (str(output / "model") if beats else report["base_model"])
        curve = report["training"]["validation_curve"]
        assert curve[0]["step"] == 0  # the base model, before training
        best = max(curve[1:-1], key=lambda point: point["ndcg@10"])  # intermediate checkpoints
        if best["ndcg@10"] > curve[0]["ndcg@10"]:  # the best one is the one chosen
            assert validation["chosen_step"] == best["step"]
        scored = [json.loads(x) for x in (output / "scored" / "mined.jsonl").open()]
        assert all(None not in row["negative_scores"] for row in scored)
        # a rerun continues from the recorded stages: no LLM call, the same answer
        again = run_adapt(spec, str(corpus), PipelineContext(settings, output))
        assert len(server.requests) == calls and again.model == result.model
        with pytest.raises(FileExistsError, match="other settings"):
            run_adapt(_spec(server.url, seed=9), str(corpus), PipelineContext(settings, output))


def test_do_no_harm_returns_the_base_model(corpus: Path, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    with fake_openai(responder) as server:
        # a learning rate that wrecks the query encoder: no checkpoint can beat the base model
        spec = _spec(
            server.url, train={"steps": 4, "eval_steps": 2, "batch_size": 4,
                               "learning_rate": 0.5, "max_doc_length": 32},
        )  # fmt: skip
        result = run_adapt(spec, str(corpus), PipelineContext(settings, tmp_path / "run"))
    assert not result.adapted and result.model == "all-MiniLM-L6-v2"
    assert "the base model is returned unchanged" in result.report["decision"]
    validation = result.report["validation"]
    assert validation["chosen_checkpoint"] <= validation["base"]


def test_spec_errors_name_the_field(tmp_path: Path) -> None:
    dotted = {"queries.passages": 50, "train.steps": 10, "train.eval_steps": 5}
    spec = build_spec(AdaptSpec, [dotted])
    assert spec.queries.passages == 50 and spec.train.steps == 10
    with pytest.raises(DataError, match=r"queries\.pasages: Extra inputs"):
        build_spec(AdaptSpec, [{"queries.pasages": 5}])
    with pytest.raises(DataError, match=r"train\.val_share"):
        build_spec(AdaptSpec, [{"train.val_share": 1.5}])
    with pytest.raises(DataError, match="needs cross_encoder"):
        build_spec(AdaptSpec, [{"teacher": "cross-encoder"}])
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({"seed": 3, "queries": {"per_passage": 4}}))
    layers = [read_spec_file(path), {"seed": 4}]
    assert build_spec(AdaptSpec, layers).model_dump()["queries"]["per_passage"] == 4
    assert build_spec(AdaptSpec, layers).seed == 4
    assert KINDS["adapt"].params.model_validate({"seed": 1}).seed == 1  # the job's body


def test_spread_positions_cover_every_stratum() -> None:
    rows = spread_positions(1000, 10, seed=1)
    assert len(rows) == 10 and [r // 100 for r in rows] == list(range(10))
    assert spread_positions(5, 10, seed=1) == [0, 1, 2, 3, 4]
    assert spread_positions(1000, 10, seed=2) != rows


def test_keep_top_share_drops_the_lowest_scores() -> None:
    queries = [GeneratedQuery(f"q{i}", f"text {i}", (f"d{i}",), (1,)) for i in range(5)]
    report = DropReport()
    report.keep(5)
    kept = keep_top_share(queries, np.array([0.5, 0.1, 0.9, 0.3, 0.7]), 0.6, report)
    assert [q.query_id for q in kept] == ["q0", "q2", "q4"]
    assert report.kept == 3 and report.dropped == {LOW_SCORE: 2}


def test_split_by_passage_keeps_a_passages_queries_together() -> None:
    queries = [GeneratedQuery(f"q{i}", "t", (f"d{i // 2}",), (1,)) for i in range(10)]
    split = split_by_passage(queries, 0.2, seed=0)
    assert split.val_passages == 1 and split.train_passages == 4 and len(split.val) == 2
    assert len({q.doc_ids[0] for q in split.val}) == 1


def test_few_shot_template_shows_worked_exchanges_before_the_passage() -> None:
    template = few_shot_template(
        [("costs $5 a day", ["how much does it cost?", "is it cheap?"])], 2
    )
    messages = template.render({"passage": "new text"})
    assert [m.role for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[1].content.startswith("Text: costs $5 a day")  # literal: no substitution
    assert messages[2].content == "how much does it cost?\nis it cheap?"
    assert messages[3].content == (
        "Text: new text\n\nWrite two different short questions that this text answers, "
        "one per line."
    )
    assert template.version != few_shot_template([("other", ["q"])], 2).version
    assert template.version != few_shot_template([("costs $5 a day", ["q"])], 3).version


def test_pick_demos_prefers_full_lists_then_scores() -> None:
    rows = [("a", "a1", 0.9), ("b", "b1", 0.5), ("b", "b2", 0.7), ("c", "c1", 0.2),
            ("c", "c2", 0.3), ("c", "c3", 0.1)]  # fmt: skip
    queries = [GeneratedQuery(q, q, (d,), (1,)) for d, q, _ in rows]
    scores = np.array([s for *_, s in rows])
    # a (one question, best score) loses to b and c, which show two; b beats c on its best
    assert pick_demos(queries, scores, 2, per_call=2) == [
        ("b", ["b2", "b1"]),
        ("c", ["c2", "c1", "c3"]),
    ]
    # with one question per call every passage shows a full list: the best score wins
    assert pick_demos(queries, scores, 1, per_call=1) == [("a", ["a1"])]


def test_a_list_generation_splits_into_questions() -> None:
    raw = "1. what is a wolf?\n2. how do wolves hunt? why in packs?\n\nHere you go:"
    assert split_questions(raw, 5) == ["what is a wolf?", "how do wolves hunt?", "why in packs?"]
    assert split_questions(raw, 2) == ["what is a wolf?", "how do wolves hunt?"]
    assert split_questions("   ", 3) == ["   "]  # nothing in it: cleaned, and dropped as empty


def test_the_adapt_job_validates_runs_and_publishes(tmp_path: Path) -> None:
    """POST /v1/jobs/adapt through the real API and Redis, then the attempt a worker would run."""
    import gzip

    from fastapi.testclient import TestClient

    from hardneg.service.api.app import create_app
    from hardneg.service.jobs.runner import run_attempt
    from hardneg.service.jobs.services import Services
    from tests.test_service_support import API_KEY, REDIS_URL, jsonl, purge, unique_prefix

    prefix = unique_prefix()
    with fake_openai(responder) as server:
        settings = Settings(
            home=tmp_path / "home",
            redis_url=REDIS_URL,
            redis_prefix=prefix,
            api_keys=[API_KEY],
            llm_backend="openai",
            llm_base_url=server.url,
            llm_model="scripted",
        )
        auth = {"Authorization": f"Bearer {API_KEY}"}
        try:
            with TestClient(create_app(settings), headers=auth) as client:
                corpus = client.post("/v1/corpora?name=t", content=gzip.compress(jsonl(DOCS)))
                corpus_id = corpus.json()["id"]
                bad = {"queries": {"pasages": 3}}
                response = client.post(
                    "/v1/jobs/adapt", json={"corpus_id": corpus_id, "params": bad}
                )
                assert response.status_code == 422 and "pasages" in response.text
                params = _spec(server.url).model_dump(exclude={"llm"})  # nested, as before
                response = client.post(
                    "/v1/jobs/adapt", json={"corpus_id": corpus_id, "params": params}
                )
                assert response.status_code == 202, response.text
                job_id = response.json()["id"]
                services = Services.connect(settings)
                try:
                    assert run_attempt(services, job_id, 1) == "succeeded"
                finally:
                    services.close()
                job = client.get(f"/v1/jobs/{job_id}").json()
                stats = job["stats"]
                assert stats["queries"]["generated"] == 48 and "decision" in stats
                expected = f"job:{job_id}" if stats["adapted"] else "all-MiniLM-L6-v2"
                assert stats["model"] == expected
                report = client.get(f"/v1/jobs/{job_id}/artifacts/report.json")
                assert report.status_code == 200 and report.json()["adapted"] == stats["adapted"]
        finally:
            purge(prefix)


def test_the_cli_takes_a_spec_file_and_dotted_overrides(corpus: Path, tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from hardneg.service.commands.adapt import register

    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """hardneg (test harness)"""

    register(app)
    runner = CliRunner()
    with fake_openai(responder) as server:
        spec = tmp_path / "spec.json"
        spec.write_text(_spec(server.url).model_dump_json(exclude={"llm"}))
        common = ["adapt", "--data", str(corpus), "--output", str(tmp_path / "run")]
        common += ["--home", str(tmp_path / "home"), "--config", str(spec)]
        common += ["--llm-backend", "openai", "--llm-model", "scripted"]
        common += ["--llm-base-url", server.url]
        bad = runner.invoke(app, [*common, "--set", "train.stepz=3"])
        assert bad.exit_code != 0 and "train.stepz" in bad.output
        done = runner.invoke(app, [*common, "--set", "seed=2"])
        assert done.exit_code == 0, done.output
    assert "decision" in done.output and "generated queries" in done.output
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["request"]["spec"]["seed"] == 2
