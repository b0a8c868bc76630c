"""The dashboard's HTML: every value from a record is escaped, curves come from the history."""

from __future__ import annotations

import re

from hardneg.service.api.dashboard_html import curves, experiment_table, job_detail, jobs_fragment
from hardneg.service.jobs.records import JobRecord

HOSTILE = "<script>alert(1)</script>"


def record(**values: object) -> JobRecord:
    base: dict[str, object] = {
        "id": "j1",
        "kind": "mine",
        "params": {},
        "corpus_id": None,
        "dedupe_key": "k",
        "max_attempts": 1,
    }
    return JobRecord(**(base | values))  # type: ignore[arg-type]


def test_record_values_are_escaped() -> None:
    job = record(stage=HOSTILE, error=HOSTILE, events=[HOSTILE], state="failed")
    for text in (job_detail(job, []), jobs_fragment([job])):
        assert "<script>alert" not in text
    assert "&lt;script&gt;" in job_detail(job, [])


def test_progress_and_curves_follow_the_record_and_history() -> None:
    running = record(state="running", done=3, total=4)
    assert 'style="width:75%"' in jobs_fragment([running])
    history = [
        {"event": "train", "step": 1, "loss": 2.0},
        {"event": "train", "step": 2, "loss": 1.0},
        {"event": "eval", "step": 2, "ndcg@10": 0.5},
    ]
    svg = curves(history)
    points = re.findall(r'points="([^"]+)"', svg)
    assert [len(p.split()) for p in points] == [2, 1]  # loss: two steps; nDCG@10: one eval
    # higher loss is drawn higher (smaller y) at the first step
    (first, second), _ = [p.split() for p in points]
    assert float(first.split(",")[1]) < float(second.split(",")[1])
    assert "no points yet" in curves(history[:2])  # no evaluation yet


def test_experiment_table_lists_methods_and_the_best() -> None:
    stats = {
        "baselines": {"bm25": {"ndcg@10": 0.68, "recall@100": 0.91, "p@10": 0.09}},
        "methods": {
            "dense": {"ndcg@10": 0.7, "recall@100": 0.93, "p@10": 0.095, "star": {"ndcg@10": 0.66}}
        },
        "best_method": "dense",
    }
    text = experiment_table(stats)
    assert "0.7000" in text and "0.6600" in text and "<b>dense</b>" in text
