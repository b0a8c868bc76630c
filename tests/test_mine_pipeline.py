"""The mine pipeline and the ``hardneg mine`` command, end to end on a tiny BEIR folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from hardneg.core.negatives import read_mined
from hardneg.miners.disk_cache import DiskCache
from hardneg.miners.filters import FilterConfig
from hardneg.miners.job import MINERS
from hardneg.miners.output import LAYOUTS
from hardneg.miners.spec import METHODS, MineSpec
from hardneg.service.commands.mine import register
from hardneg.service.pipelines.context import PipelineContext
from hardneg.service.pipelines.mine import MANIFEST_FILE, run_mining
from hardneg.service.settings import Settings
from tests.conftest import write_beir
from tests.test_miners import DOCS, QRELS, QUERIES


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return write_beir(tmp_path / "animals", DOCS, QUERIES, QRELS, "train")


def request_for(data: Path, **kwargs: object) -> MineSpec:
    return MineSpec.model_validate({"method": "bm25", "split": "train"} | kwargs)


def test_bm25_mining_writes_every_file_and_reuses_the_cache(data: Path, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    cache = DiskCache(tmp_path / "cache")
    request = request_for(data, filters=FilterConfig(num_negatives=2))
    result = run_mining(
        request, str(data), PipelineContext(settings, tmp_path / "out", cache=cache)
    )
    expected = {
        "mined",
        "mined_meta",
        "stats",
        "histogram",
        "manifest",
        *(f"{layout}.{fmt}" for layout in LAYOUTS for fmt in ("jsonl", "parquet")),
    }
    assert set(result.files) == expected
    assert all(path.is_file() and path.parent == tmp_path / "out" for path in result.files.values())
    rows = list(read_mined(result.files["mined"]))
    # q3 ("what comes out of a volcano") shares no stem with any document but its positive
    assert [r.query_id for r in rows] == ["q1", "q2"]
    assert all(len(r.negative_ids) == 2 and r.method == "bm25" for r in rows)
    assert "false_negative_probe" in result.stats
    queries = result.stats["queries"]
    assert isinstance(queries, dict)
    assert queries["skipped_query_ids"] == {"too_few_negatives": ["q3"]}
    manifest = json.loads(result.files["manifest"].read_text())
    assert manifest["method"] == "bm25" and manifest["filters"]["num_negatives"] == 2
    assert manifest["files"]["triplet.parquet"] == "triplet.parquet"
    assert (cache.hits, cache.misses) == (0, 1)

    again = run_mining(
        request, str(data), PipelineContext(settings, tmp_path / "out", cache=cache)
    )  # replaces its own output
    assert cache.hits == 1 and list(read_mined(again.files["mined"])) == rows
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]


def test_a_cancelled_run_leaves_the_previous_output_untouched(data: Path, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    output = tmp_path / "out"
    first = run_mining(request_for(data), str(data), PipelineContext(settings, output))
    before = first.files["mined"].read_bytes()

    class CancelledError(Exception):
        pass

    def cancel_mid_write(done: int, total: int, stage: str) -> None:
        if stage == "writing outputs" and done >= 3:
            raise CancelledError

    changed = request_for(data, filters=FilterConfig(num_negatives=1))
    with pytest.raises(CancelledError):
        run_mining(changed, str(data), PipelineContext(settings, output, cancel_mid_write))
    assert first.files["mined"].read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["animals", "home", "out"]


def test_refuses_to_replace_a_folder_it_did_not_write(data: Path, tmp_path: Path) -> None:
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not empty"):
        run_mining(
            request_for(data), str(data), PipelineContext(Settings(home=tmp_path / "home"), foreign)
        )
    assert (foreign / "notes.txt").read_text() == "keep me"
    assert not (foreign / MANIFEST_FILE).exists()


def test_unknown_methods_are_named(data: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"(?s)method.*'bm25', 'dense', 'cross-encoder'"):
        request_for(data, method="nope")
    assert set(METHODS) == set(MINERS) >= {"bm25", "dense", "cross-encoder"}


@pytest.fixture
def cli() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.callback()
    def main() -> None:  # a group, as in hardneg.service.cli
        pass

    return app


def test_cli_mines_with_filter_flags(cli: typer.Typer, data: Path, tmp_path: Path) -> None:
    output = tmp_path / "cli-out"
    args = ["mine", "--data", str(data), "--split", "train", "--method", "bm25"]
    args += ["--num-negatives", "2", "--relative-margin", "0.05", "--sampling", "random"]
    args += ["--seed", "3", "--layout", "triplet", "--format", "jsonl"]
    args += ["--output", str(output), "--home", str(tmp_path / "home")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "mined with bm25" in result.output
    assert sorted(p.name for p in output.iterdir()) == [
        "manifest.json",
        "mined.jsonl",
        "mined.meta.json",
        "scores.png",
        "stats.json",
        "triplet.jsonl",
    ]
    stats = json.loads((output / "stats.json").read_text())
    assert stats["provenance"]["scorer"] == "bm25"
    meta = json.loads((output / "mined.meta.json").read_text())
    assert meta["filters"]["relative_margin"] == 0.05 and meta["filters"]["sampling"] == "random"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--method", "magic"], "method: Input should be 'bm25'"),
        (["--layout", "pairs"], "pairs"),
        (["--num-negatives", "0"], "num_negatives"),
        (["--split", "dev"], "no qrels for split 'dev'"),
        (["--processes", "2"], "processes > 1 shards dense mining only, not 'bm25'"),
    ],
)
def test_cli_reports_bad_input_clearly(
    cli: typer.Typer, data: Path, tmp_path: Path, extra: list[str], message: str
) -> None:
    args = ["mine", "--data", str(data), "--output", str(tmp_path / "o")]
    args += ["--home", str(tmp_path / "home"), *extra]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code != 0
    assert message in " ".join(result.output.split()), result.output
    assert not (tmp_path / "o").exists()
