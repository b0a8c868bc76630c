"""The false-negative probe can fail: with every filter off, a hidden positive comes back as a
negative; positive-aware margins catch it. Real BM25 index, real miner, real mining pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hardneg.core.beir import BeirSplit, load_split
from hardneg.core.workspace import Workspace
from hardneg.miners.bm25 import mine_bm25
from hardneg.miners.filters import FilterConfig
from hardneg.miners.job import MiningJob
from hardneg.miners.probe import count_returned, hide_positives
from hardneg.miners.spec import MineSpec
from hardneg.service.pipelines.context import PipelineContext
from hardneg.service.pipelines.mine import false_negative_probe, run_mining
from hardneg.service.settings import Settings
from tests.conftest import write_beir

TOPICS = 10


def _corpus() -> tuple[
    list[dict[str, object]], list[dict[str, object]], list[tuple[str, str, int]]
]:
    """Per topic: two near-identical positives, and distractors sharing one or two terms."""
    docs: list[dict[str, object]] = []
    queries: list[dict[str, object]] = []
    qrels: list[tuple[str, str, int]] = []
    for i in range(TOPICS):
        word, place = f"zorb{chr(97 + i)}ite", f"krell{chr(97 + i)}"
        docs += [
            {"_id": f"p{i}a", "title": "", "text": f"{word} crystals glow violet in {place} caves"},
            {"_id": f"p{i}b", "title": "", "text": f"in {place} caves {word} crystals glow violet"},
            {"_id": f"d{i}a", "title": "", "text": f"{word} ore is mined and sold by companies"},
            {"_id": f"d{i}b", "title": "", "text": f"tourists visit {place} every summer"},
            {"_id": f"d{i}c", "title": "", "text": "crystals grow slowly from salty water"},
        ]
        queries.append({"_id": f"q{i}", "text": f"why do {word} crystals glow in {place} caves"})
        qrels += [(f"q{i}", f"p{i}a", 1), (f"q{i}", f"p{i}b", 1)]
    return docs, queries, qrels


@pytest.fixture
def crystals(tmp_path: Path) -> Path:
    docs, queries, qrels = _corpus()
    return write_beir(tmp_path / "crystals", docs, queries, qrels, "train")


def _job(folder: Path, home: Path, filters: FilterConfig) -> MiningJob:
    return MiningJob(MineSpec(filters=filters), load_split(folder, "train"), Workspace(home))


def test_hiding_is_seeded_per_query_and_only_for_queries_with_two_positives() -> None:
    qrels = {"a": {"x": 1, "y": 1, "z": 0}, "b": {"x": 1}, "c": {"u": 2, "v": 1}}
    first = hide_positives(qrels, seed=1)
    assert set(first.hidden) == {"a", "c"}  # b has one positive
    assert first.hidden["a"] in {"x", "y"} and first.hidden["a"] not in first.qrels["a"]
    assert first.qrels["a"]["z"] == 0  # the grade-0 judgement stays
    assert hide_positives(qrels, 1, ["a"]).hidden == {"a": first.hidden["a"]}
    assert hide_positives(qrels, seed=1) == first


def test_the_probe_detects_a_miner_without_filters_and_margins_lower_the_rate(
    crystals: Path, tmp_path: Path
) -> None:
    no_filters = FilterConfig(num_negatives=1, range_max=None)
    job = _job(crystals, tmp_path / "home", no_filters)
    unfiltered = false_negative_probe(mine_bm25, job, seed=0)
    assert unfiltered["hidden_positives"] == TOPICS
    # the hidden twin outscores every distractor: it is mined as the negative every time
    assert unfiltered["rate"] == 1.0 and unfiltered["returned"] == TOPICS

    margins = FilterConfig(num_negatives=1, relative_margin=0.1)
    filtered = false_negative_probe(mine_bm25, _job(crystals, tmp_path / "home", margins), seed=0)
    assert filtered["hidden_positives"] == TOPICS
    assert filtered["rate"] is not None and filtered["rate"] < unfiltered["rate"]


def test_returned_counts_only_the_query_s_own_hidden_positive() -> None:
    from hardneg.core.negatives import MinedQuery

    rows = [
        MinedQuery("q1", "t", ("a",), ("A",), ("h1",), ("H",)),
        MinedQuery("q2", "t", ("b",), ("B",), ("h1",), ("H",)),  # q1's hidden doc, not q2's
    ]
    result = count_returned(rows, {"q1": "h1", "q2": "h2", "q3": "h3"})
    assert (result.hidden_positives, result.returned) == (3, 1)
    assert result.rate == pytest.approx(1 / 3)


def test_mining_stats_report_the_probe_instead_of_a_judged_negative_count(
    crystals: Path, tmp_path: Path
) -> None:
    settings = Settings(home=tmp_path / "home")
    request = MineSpec(
        method="bm25",
        filters=FilterConfig(num_negatives=1),
        layouts=("triplet",),
        formats=("jsonl",),
    )
    result = run_mining(request, str(crystals), PipelineContext(settings, tmp_path / "out"))
    stats = json.loads(result.files["stats"].read_text())
    assert "false_negative_fraction" not in stats  # 0 by construction: removed
    probe = stats["false_negative_probe"]
    assert probe["hidden_positives"] == TOPICS and 0.0 <= probe["rate"] <= 1.0


def test_a_split_without_double_positives_has_nothing_to_probe(tmp_path: Path) -> None:
    folder = write_beir(tmp_path / "tiny")
    split: BeirSplit = load_split(folder, "test")
    job = MiningJob(
        MineSpec(filters=FilterConfig(num_negatives=1)), split, Workspace(tmp_path / "home")
    )
    probe = false_negative_probe(mine_bm25, job, seed=0)
    assert probe["hidden_positives"] == 0 and probe["rate"] is None
