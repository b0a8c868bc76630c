"""The ``llm`` mining method (``mine_llm``): job options, shared filters, report, and the mine
pipeline's writers taking its rows (scripted endpoint; MiniLM as embedder and scorer)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from hardneg.core.beir import load_split
from hardneg.core.negatives import read_mined
from hardneg.core.workspace import Workspace
from hardneg.miners.disk_cache import DiskCache
from hardneg.miners.filters import FilterConfig
from hardneg.miners.job import MiningJob
from hardneg.miners.llm.miner import mine_llm, negative_config
from hardneg.miners.spec import MineSpec
from hardneg.service.pipelines.mine import write_run
from tests.test_llm_fakes import Reply, fake_openai, user_text

OFF_TOPIC = {
    "which animals descend from wolves": [
        "Wolves live in packs led by a breeding pair and defend large territories in the "
        "northern forests of Europe and Asia.",
        "Wolves howl to keep in touch with their pack across long distances, especially at dusk "
        "and during the winter breeding season.",
        "Sure! Here is a passage:",
    ],
    "how do plants make sugar from sunlight": [
        "Many gardeners grow tomatoes in greenhouses where sunlight is filtered through glass "
        "panes and the air stays warm all year.",
        "I'm sorry, but I cannot write that passage.",
        "I'm sorry, but I cannot write that passage.",
    ],
}


def scripted(payload: dict[str, object]) -> Reply:
    text = user_text(payload)
    seed = payload["seed"]
    assert isinstance(seed, int)
    for query, answers in OFF_TOPIC.items():
        if query in text:
            return Reply(content=answers[seed % len(answers)])
    return Reply(content="")  # the volcano query gets nothing usable


def job_for(tiny_beir: Path, tmp_path: Path, url: str, **options: object) -> MiningJob:
    spec = {
        "method": "llm",
        "filters": FilterConfig(num_negatives=2, min_negatives=1, relative_margin=0.03),
        "llm_backend": "openai",
        "llm_base_url": url,
        "llm_model": "scripted",
        "llm_api_key_env": "HARDNEG_UNSET_TEST_KEY",
        "llm_per_query": 3,
    } | options
    return MiningJob(
        MineSpec.model_validate(spec),
        load_split(tiny_beir, "test"),
        Workspace(tmp_path / "home"),
        DiskCache(tmp_path / "cache"),
    )


def test_mine_llm_rows_report_and_provenance(tiny_beir: Path, tmp_path: Path) -> None:
    with fake_openai(scripted) as server:
        job = job_for(tiny_beir, tmp_path, server.url)
        run = mine_llm(job)
        again = mine_llm(job)
    assert len(server.requests) == 9  # 3 queries x 3 generations, the rerun is all cached
    assert run.method == "llm" and again.rows == run.rows
    by_query = {row.query_id: row for row in run.rows}
    assert set(by_query) == {"q1", "q2"}
    assert by_query["q1"].negatives == tuple(OFF_TOPIC["which animals descend from wolves"][:2])
    assert len(by_query["q2"].negatives) == 1
    for row in run.rows:
        assert all(n.startswith("gen:") for n in row.negative_ids)
        assert not set(row.negative_ids) & set(job.split.qrels[row.query_id])
    report = run.report
    assert (report.num_queries, report.full, report.short) == (3, 1, 1)
    assert report.short_ids == ("q2",)
    assert report.skipped_ids == {"too_few_negatives": ("q3",)}
    assert report.removed == {"empty": 4, "refusal": 2}
    assert run.provenance["prompt"] == {"name": "negative", "version": "negative-v1"}
    llm = run.provenance["llm"]
    assert isinstance(llm, dict) and llm["fingerprint"] == f"openai:{server.url}:scripted"


def test_the_mine_pipeline_writes_llm_rows(tiny_beir: Path, tmp_path: Path) -> None:
    with fake_openai(scripted) as server:
        job = job_for(tiny_beir, tmp_path, server.url)
        run = mine_llm(job)
    files, stats = write_run(tmp_path / "out", str(tiny_beir), job, run)
    rows = list(read_mined(files["mined"]))
    assert [r.query_id for r in rows] == [r.query_id for r in run.rows]
    assert "false_negative_fraction" not in stats  # judged docs are never mined: removed
    manifest = json.loads(files["manifest"].read_text())
    assert manifest["method"] == "llm"


def test_job_options_are_validated(tiny_beir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"llm\.per_query"):
        job_for(tiny_beir, tmp_path, "http://127.0.0.1:9/v1", llm_per_query="three")
    with pytest.raises(ValueError, match=r"backend\.backend"):
        job_for(tiny_beir, tmp_path, "http://127.0.0.1:9/v1", llm_backend="gpt")
    good = job_for(tiny_beir, tmp_path, "x", llm_temperature=1)
    config = negative_config(good)
    assert config.sampling.temperature == 1.0 and config.relative_margin == 0.03
    no_margins = replace(
        good, spec=good.spec.model_copy(update={"filters": FilterConfig(num_negatives=2)})
    )
    assert negative_config(no_margins).relative_margin == 0.05  # the default answer check
