"""The README's curl examples ("Running the service"), run as written against a live server and
worker: ``curl -d '{...}'`` declares a form content type, and the JSON routes must take it.

Each line of the block that starts ``H="Authorization: Bearer $KEY"`` is run by bash with real
curl (or, where curl is not installed, sent by httpx with the headers curl sends), after only
these substitutions: the host and port, and the ids the README writes as ``c…`` and ``j…``.
"""

from __future__ import annotations

import gzip
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO, TINY_DOCS, TINY_QRELS, TINY_QUERIES
from tests.test_service_support import API_KEY, Stack, jsonl, qrels_tsv, running_stack

STATUS_MARK = "\n#status "


def readme_curl_lines() -> list[str]:
    text = (REPO / "README.md").read_text()
    block = re.search(r'```\nH="Authorization: Bearer \$KEY"\n(.*?)```', text, flags=re.S)
    assert block is not None, "the README's curl block is gone"
    lines = [line.split("  #")[0].rstrip() for line in block.group(1).splitlines()]
    return [line for line in lines if line.startswith("curl ")]


def run_curl(line: str, cwd: Path) -> tuple[int, str]:
    """(status, body) of one README line run by bash with real curl."""
    command = f"{line} -s -w '{STATUS_MARK}%{{http_code}}'"
    env = {"KEY": API_KEY, "PATH": "/usr/bin:/bin", "H": f"Authorization: Bearer {API_KEY}"}
    done = subprocess.run(
        ["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )
    body, _, status = done.stdout.rpartition(STATUS_MARK)
    return int(status), body


def send_like_curl(line: str, cwd: Path) -> tuple[int, str]:
    """The same request with httpx, with the headers curl sends (``-d``/``--data-binary``:
    POST, ``Content-Type: application/x-www-form-urlencoded``)."""
    words = shlex.split(line.replace('"$H"', f'"Authorization: Bearer {API_KEY}"'))[1:]
    method, headers, body, output, url = "GET", {}, None, None, ""
    while words:
        word = words.pop(0)
        if word == "-H":
            name, _, value = words.pop(0).partition(": ")
            headers[name] = value
        elif word in ("-d", "--data-binary"):
            data = words.pop(0)
            body = (cwd / data[1:]).read_bytes() if data.startswith("@") else data.encode()
            headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
            method = "POST" if method == "GET" else method
        elif word == "-X":
            method = words.pop(0)
        elif word == "-o":
            output = cwd / words.pop(0)
        else:
            url = word if word.startswith("http") else f"http://{word}"
    response = httpx.request(method, url, headers=headers, content=body, timeout=60)
    if output is not None:
        output.write_bytes(response.content)
    return response.status_code, response.text


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("readme-curl")) as built:
        yield built


def test_every_readme_curl_example_works_as_written(stack: Stack, tmp_path: Path) -> None:
    (tmp_path / "corpus.jsonl.gz").write_bytes(gzip.compress(jsonl(TINY_DOCS)))
    (tmp_path / "queries.jsonl").write_bytes(jsonl(TINY_QUERIES))
    (tmp_path / "train.tsv").write_bytes(qrels_tsv(TINY_QRELS))
    send = run_curl if shutil.which("curl") else send_like_curl
    host = stack.processes.base_url.removeprefix("http://")
    ids: dict[str, str] = {}
    statuses: list[tuple[str, int]] = []
    for line in readme_curl_lines():
        concrete = line.replace("localhost:8000", host).replace("c…", ids.get("corpus", "c…"))
        # j… is the mining job, except where the README acts on the training job
        job = ids.get("train") if ("artifacts" in line or "cancel" in line) else ids.get("mine")
        concrete = concrete.replace("j…", job or "j…")
        if "/v1/jobs/train" in line:  # it names a finished mining job
            stack.wait_job(ids["mine"], {"succeeded"}, timeout=120)
        status, body = send(concrete, tmp_path)
        statuses.append((line, status))
        assert status < 500 and status not in (415, 422), (line, status, body)
        if "name=mine" in line:
            ids["corpus"] = httpx.Response(200, text=body).json()["id"]
        elif "/v1/jobs/mine" in line:
            ids["mine"] = httpx.Response(200, text=body).json()["id"]
        elif "/v1/jobs/train" in line:
            ids["train"] = httpx.Response(200, text=body).json()["id"]
    expected = [201, 200, 200, 202, 202, 200, 200]
    assert [status for _, status in statuses[: len(expected)]] == expected, statuses
    assert statuses[-1][1] == 202, statuses  # the cancel
