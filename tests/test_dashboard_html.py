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


def test_experiment_table_shows_intervals_and_the_verdict() -> None:
    def seeds(mean: float) -> dict[str, object]:
        return {"mean": mean, "std": 0.01, "seeds": [mean - 0.01, mean + 0.01]}

    stats = {
        "stages": {"comparison": "STAR, frozen documents (static negatives)"},
        "baselines": {"bm25": {"ndcg@10": 0.68, "recall@100": 0.91, "p@10": 0.09}},
        "methods": {
            "none": {
                "ndcg@10": seeds(0.66),
                "recall@100": seeds(0.9),
                "vs_control": None,
                "adore": {"ndcg@10": seeds(0.7)},
            },
            "dense": {
                "ndcg@10": seeds(0.7),
                "recall@100": seeds(0.93),
                "vs_control": {"delta": 0.04, "ci95": [0.01, 0.07], "p_holm": 0.012},
                "adore": {"ndcg@10": seeds(0.72)},
            },
        },
        "best_method": None,
        "indistinguishable": ["dense", "none"],
    }
    text = experiment_table(stats)
    assert "0.7000 ± 0.0100" in text and "<b>dense</b>" in text and "<b>none</b>" in text
    assert "+0.0400 [+0.0100, +0.0700]" in text and "0.012" in text
    assert "STAR, frozen documents" in text and "cannot be told apart: dense, none" in text
