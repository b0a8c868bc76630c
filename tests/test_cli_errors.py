"""Every command that downloads a dataset by name, against real network failures: one line
naming the URL and the cause, exit code 2, no traceback (one only with ``--verbose``)."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hardneg.service.cli import app
from tests.conftest import write_beir
from tests.test_cli import _hardneg

NAME = "nfcorpus"  # a known BEIR name (published checksum: no warning is logged)
TIMEOUT = "1"  # HARDNEG_DOWNLOAD_TIMEOUT_SECONDS: the stalling server costs one second


class _NotFound(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_error(404)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture(scope="module")
def not_found_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/beir"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def stalling_url() -> Iterator[str]:
    """A listening socket that never answers: the kernel accepts, nobody reads or writes."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/beir"
    listener.close()


@pytest.fixture(scope="module")
def tls_url(not_found_url: str) -> str:
    """HTTPS to a server that speaks plain HTTP: the TLS handshake fails."""
    return not_found_url.replace("http://", "https://", 1)


@pytest.fixture(scope="module")
def refused_url() -> str:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/beir"  # closed again: nothing listens there


FAILURES = {
    # failure -> (fixture giving the base URL, or a literal URL; words the message must hold)
    "unresolvable": ("http://beir-mirror.invalid/beir", "cannot resolve the host name"),
    "refused": ("refused_url", "connection refused"),
    "not-found": ("not_found_url", "HTTP 404 Not Found"),
    "stalled": ("stalling_url", "did not answer within 1 s"),
    "tls": ("tls_url", "TLS failure with 127.0.0.1"),
}


def _commands(tmp_path: Path) -> dict[str, list[str]]:
    """Each command that takes a dataset name, with the least it needs to get to the download."""
    negatives = tmp_path / "mined.jsonl"
    negatives.write_text('{"query_id": "q1", "positive_ids": ["d1"], "negative_ids": ["d2"]}\n')
    out = str(tmp_path / "out")
    return {
        "datasets download": ["datasets", "download", NAME],
        "evaluate": ["evaluate", "--data", NAME, "--retriever", "bm25"],
        "mine": ["mine", "--data", NAME, "--output", out],
        "generate-queries": ["generate-queries", "--data", NAME, "--output", out],
        "train star": ["train", "star", "--data", NAME, "--negatives", str(negatives)],
        "experiment": ["experiment", "--data", NAME, "--output", out],
    }


def _invoke(args: list[str], base_url: str, home: Path) -> tuple[int, str]:
    env = {
        "HARDNEG_HOME": str(home),
        "HARDNEG_BEIR_BASE_URL": base_url,
        "HARDNEG_DATA_DIRS": "",
        "HARDNEG_DOWNLOAD_TIMEOUT_SECONDS": TIMEOUT,
        "COLUMNS": "80",
    }
    result = CliRunner().invoke(app, args, env=env)
    return result.exit_code, result.stdout


@pytest.mark.parametrize("failure", sorted(FAILURES))
def test_each_downloading_command_reports_a_network_failure_in_one_line(
    failure: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    source, cause = FAILURES[failure]
    base_url = source if source.startswith("http:") else request.getfixturevalue(source)
    for command, args in _commands(tmp_path).items():
        code, out = _invoke(args, base_url, tmp_path / "home")
        lines = [line for line in out.splitlines() if line.strip()]
        assert code == 2, (command, out)
        assert len(lines) == 1, (command, out)
        assert lines[0].startswith(f"error: cannot download {base_url}/{NAME}.zip: "), command
        assert cause in lines[0], (command, lines[0])
        assert "pass a local BEIR folder" in lines[0], command
        assert not (tmp_path / "home" / "datasets" / NAME).exists(), command
        if command != "experiment":  # an experiment's folder holds its resumable state
            assert not (tmp_path / "out").exists(), command


def test_the_console_command_prints_one_line_and_a_traceback_only_when_verbose(
    refused_url: str, tmp_path: Path
) -> None:
    args = ("datasets", "download", NAME, "--base-url", refused_url)
    quiet = _hardneg(*args, home=tmp_path)
    assert quiet.returncode == 2, quiet.stdout + quiet.stderr
    assert quiet.stdout.strip().count("\n") == 0 and "connection refused" in quiet.stdout
    assert "Traceback" not in quiet.stdout + quiet.stderr
    loud = _hardneg("--verbose", *args, home=tmp_path)
    assert loud.returncode != 0
    assert "Traceback" in loud.stdout + loud.stderr and "DownloadError" in loud.stdout + loud.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["evaluate", "--data", "{missing}"], "no dataset folder at"),
        (["evaluate", "--data", "{bad}", "--retriever", "bm25"], "corpus.jsonl:6: duplicate"),
        (["evaluate", "--data", "{good}", "--retriever", "sparse"], "--retriever must be one of"),
        (["train", "star", "--config", "{unreadable}"], "{unreadable}: Is a directory"),
        (["train", "star", "--set", "nokeyvalue"], "expected key=value, got 'nokeyvalue'"),
        (["datasets", "download", "../../etc"], "invalid dataset name"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(args: list[str], message: str, tmp_path: Path) -> None:
    bad = write_beir(tmp_path / "bad")
    with (bad / "corpus.jsonl").open("a") as handle:
        handle.write('{"_id": "d1", "text": "again"}\n')
    unreadable = tmp_path / "run.yaml"  # a folder: unreadable as a file, even for root
    unreadable.mkdir()
    paths = {
        "missing": str(tmp_path / "nowhere" / "beir"),
        "bad": str(bad),
        "good": str(write_beir(tmp_path / "good")),
        "unreadable": str(unreadable),
    }
    args = [a.format(**paths) for a in args]
    code, out = _invoke(args, "http://beir-mirror.invalid/beir", tmp_path / "home")
    lines = [line for line in out.splitlines() if line.strip()]
    assert code == 2, out
    assert len(lines) == 1 and lines[0].startswith("error: "), out
    assert message.format(**paths) in lines[0]
