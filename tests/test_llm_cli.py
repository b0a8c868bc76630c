"""``hardneg generate-queries``: scripted endpoint (openai backend) and real SmolLM2 in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from click.testing import Result
from typer.testing import CliRunner

from hardneg.core.beir import load_split
from hardneg.miners.llm.parsing import generated_id
from hardneg.service.commands.generate import register
from hardneg.service.pipelines.generate import sample_positions
from tests.test_llm_fakes import Reply, fake_openai, user_text


def make_app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """hardneg (test harness)"""

    register(app)
    return app


runner = CliRunner()

QUERIES = {
    "Cats are small": "Are cats carnivorous mammals?",
    "Dogs are loyal": "which animals descend from wolves",
    "Plants turn sunlight": "What is this text about?",
    "Magma erupts": "Where does magma erupt through the crust?",
    "Grey wolves": "magma erupting through the crust",
}


def scripted(payload: dict[str, object]) -> Reply:
    text = user_text(payload)
    for start, answer in QUERIES.items():
        if start in text:
            return Reply(content=answer)
    return Reply(400, raw=b"unexpected")


def invoke(*args: str) -> Result:
    return runner.invoke(make_app(), ["generate-queries", *args])


def test_openai_backend_end_to_end(tiny_beir: Path, tmp_path: Path) -> None:
    out = tmp_path / "generated"
    common = ["--data", str(tiny_beir), "--output", str(out), "--home", str(tmp_path / "home")]
    options = ["--backend", "openai", "--model", "scripted", "--per-passage", "1"]
    options += ["--max-passages", "0", "--round-trip-k", "1", "--api-key-env", "NO_SUCH_KEY"]
    with fake_openai(scripted) as server:
        first = invoke(*common, *options, "--base-url", server.url)
        assert first.exit_code == 0, first.output
        second = invoke(*common, *options, "--base-url", server.url)
        assert second.exit_code == 0, second.output
    assert len(server.requests) == 5  # the rerun came from the cache
    assert "5 from cache" in second.output
    assert "dropped: meta" in first.output and "dropped: round_trip" in first.output
    split = load_split(out, "train")
    assert split.qrels == {
        generated_id("Are cats carnivorous mammals?"): {"d1": 1},
        generated_id("which animals descend from wolves"): {"d2": 1},
        generated_id("Where does magma erupt through the crust?"): {"d4": 1},
    }
    summary = json.loads((out / "generation.json").read_text())
    assert summary["llm"]["fingerprint"] == f"openai:{server.url}:scripted"
    assert summary["prompt"]["version"] == "doc2query-v1"
    assert summary["report"]["dropped"] == {"meta": 1, "round_trip": 1}


def test_llama_cpp_backend_end_to_end(tiny_beir: Path, tmp_path: Path) -> None:
    out = tmp_path / "generated"
    result = invoke(
        "--data",
        str(tiny_beir),
        "--output",
        str(out),
        "--home",
        str(tmp_path / "home"),
        "--max-passages",
        "2",
        "--per-passage",
        "1",
        "--max-tokens",
        "16",
        "--threads",
        "1",
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "generation.json").read_text())
    # the default model computes with its F16 copy (weights auto), named by the file it came from
    fingerprint = summary["llm"]["fingerprint"]
    assert fingerprint.startswith("gguf:SmolLM2-135M-Instruct.Q4_1-")
    assert ".f16.gguf:" in fingerprint
    assert summary["llm"]["weights"] == "auto"
    assert summary["report"]["total"] == 2 and summary["generation"]["generated"] == 2
    split = load_split(out, "train")
    assert len(split.queries) == summary["queries"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--backend", "gpt"], "llm.backend: Input should be 'llama_cpp' or 'openai'"),
        (["--round-trip", "splade"], "round_trip: Input should be 'bm25' or 'dense'"),
        (["--backend", "openai"], "needs a model name"),
        (["--prompt-file", "/nonexistent/prompt.toml"], "prompt file not found"),
    ],
)
def test_bad_arguments_are_reported(
    tiny_beir: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    base = ["--data", str(tiny_beir), "--output", str(tmp_path / "o"), "--home", str(tmp_path)]
    result = invoke(*base, *args)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert not (tmp_path / "o").exists()


def test_refuses_to_replace_an_unrelated_folder(tiny_beir: Path, tmp_path: Path) -> None:
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "thesis.tex").write_text("precious")
    result = invoke("--data", str(tiny_beir), "--output", str(taken), "--home", str(tmp_path))
    assert result.exit_code == 2 and "not empty" in result.output
    assert (taken / "thesis.tex").read_text() == "precious"


def test_passage_sample_is_seeded_and_sorted() -> None:
    assert sample_positions(5, None, 0) == [0, 1, 2, 3, 4]
    assert sample_positions(5, 10, 0) == [0, 1, 2, 3, 4]
    picked = sample_positions(1000, 10, 3)
    assert picked == sorted(picked) and len(set(picked)) == 10
    assert picked == sample_positions(1000, 10, 3) != sample_positions(1000, 10, 4)
    with pytest.raises(ValueError, match="max_passages"):
        sample_positions(5, 0, 0)
