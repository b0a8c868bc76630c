"""Every table the CLI prints, rendered in an 80-column terminal: no header or cell cut to "…"."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console
from rich.table import Table
from typer.testing import CliRunner

from hardneg.core.metrics import METRIC_NAMES
from hardneg.service.cli import app
from hardneg.service.commands import evaluate, experiment, generate, mine, train
from hardneg.service.commands.tables import fit_table
from hardneg.service.pipelines.generate import GenerateQueriesResult
from hardneg.service.pipelines.mine import MineResult

LONG_PATH = Path("/home/someone/hardneg/experiments/scifact-quick/models/star-then-adore")


def _render(table: Table, width: int = 80) -> str:
    console = Console(width=width, file=io.StringIO(), record=True, color_system=None)
    console.print(table)
    return console.export_text()


def _tables() -> dict[str, Table]:
    narrow = Console(width=80, file=io.StringIO())
    rows = {
        "bm25": dict.fromkeys(METRIC_NAMES, 0.6451),
        "dense:all-MiniLM-L6-v2": dict.fromkeys(METRIC_NAMES, 0.6451),
        f"dense:{LONG_PATH}": dict.fromkeys(METRIC_NAMES, 0.7669),
    }
    seconds = {"candidates": 12.5, "filtering": 0.4, "writing": 0.2}
    mined = MineResult(
        output=LONG_PATH / "mined",
        files={},
        stats={
            "method": "cross-encoder",
            "queries": {
                "num_queries": 809,
                "queries_full": 800,
                "queries_short": 9,
                "queries_skipped": {"no positive in the corpus": 2},
            },
            "negatives": 2400,
            "false_negative_fraction": 0.0123,
        },
        seconds=seconds,
    )
    generated = GenerateQueriesResult(
        output=LONG_PATH / "queries",
        passages=100,
        queries=212,
        report={"total": 300, "kept": 212, "dropped": {"passage not in top-10": 70, "empty": 18}},
        generation={"cached": 12, "generations_per_second": 1.75},
        seconds=seconds,
    )
    before = dict.fromkeys(METRIC_NAMES, 0.6451)
    info = {
        "trainer": "adore",
        "steps": 120,
        "eval_split": "test",
        "metrics_before": before,
        "metrics_after": before,
    }
    return {
        "evaluate": evaluate.metrics_table("scifact / test (300 queries)", rows, narrow),
        "mine": mine.summary_table(mined),
        "generate-queries": generate.summary_table(generated),
        "train": train.metrics_table(info),
        "experiment": experiment.comparison_table(_experiment_report()),
    }


def _experiment_report() -> dict[str, object]:
    """A report as the experiment writes it: baselines, the control and the longest arm name."""

    def seeds(mean: float) -> dict[str, object]:
        return {"mean": mean, "std": 0.0123, "seeds": [mean, mean, mean]}

    def arm(mean: float, versus: dict[str, object] | None) -> dict[str, object]:
        return {
            "ndcg@10": seeds(mean),
            "recall@100": seeds(0.9433),
            "vs_control": versus,
            "adore": {"ndcg@10": seeds(0.7669)},
        }

    versus = {"delta": -0.0123, "ci95": [-0.0456, 0.0210], "p": 0.04, "p_holm": 0.512}
    metrics = {"ndcg@10": 0.6863, "recall@100": 0.9127}
    return {
        "dataset": "/home/someone/data/beir/scifact",
        "baselines": {"bm25": metrics, "zero-shot": metrics},
        "methods": {
            "none": arm(0.6723, None),
            "cross-encoder": arm(0.6601, versus),
            "llm-query-only": arm(0.6601, versus),
        },
    }


@pytest.mark.parametrize("name", ["evaluate", "mine", "generate-queries", "train", "experiment"])
def test_each_table_fits_80_columns_uncut(name: str) -> None:
    table = _tables()[name]
    text = _render(table)
    assert "…" not in text, text
    assert max(map(len, text.splitlines())) <= 80
    for column in table.columns:
        if table.show_header:
            assert str(column.header) in text, (column.header, text)


def test_fit_table_is_side_by_side_when_wide_and_vertical_when_narrow() -> None:
    header = ("retriever", *METRIC_NAMES)
    rows = [[f"dense:{LONG_PATH}", *("0.7669" for _ in METRIC_NAMES)]]
    wide = _render(fit_table("t", header, rows, Console(width=200, file=io.StringIO())), 200)
    assert wide.count("0.7669") == len(METRIC_NAMES) and len(wide.splitlines()) < 8
    assert all(name in wide.splitlines()[2] for name in header)  # one header line
    narrow = _render(fit_table("t", header, rows, Console(width=80, file=io.StringIO())))
    assert "…" not in narrow
    assert str(LONG_PATH) in "".join(c for c in narrow if c not in " │\n")  # folded, not cut
    for name in METRIC_NAMES:
        lines = [line.split() for line in narrow.splitlines()]
        assert sum(name in words and "0.7669" in words for words in lines) == 1


def test_evaluate_prints_a_readable_table_in_80_columns(tiny_beir: Path, tmp_path: Path) -> None:
    env = {"HARDNEG_HOME": str(tmp_path), "COLUMNS": "80"}
    result = CliRunner().invoke(
        app, ["evaluate", "--data", str(tiny_beir), "--retriever", "bm25"], env=env
    )
    assert result.exit_code == 0, result.output
    assert "…" not in result.stdout
    for name in ("retriever", *METRIC_NAMES):
        assert name in result.stdout
