"""Schemathesis against the service's own OpenAPI schema, on a real ``hardneg serve`` and Redis.

The API runs as a real process with a seeded data set: a ready uploaded corpus with queries and
qrels, a succeeded evaluation job (run in this process exactly as a worker runs it), a queued job,
and spare corpora and cancelled jobs for the DELETE routes to remove. Schemathesis draws path and
body ids from those seeds part of the time and invents them the rest, so both the found and the
not-found branches of every route are exercised. No worker runs: a fuzzed job request that is
accepted stays queued instead of starting real work; a worker heartbeat keeps ``/readyz`` ready.

Three passes: with the key, without one and with a wrong one. Each request's response must not
be a 5xx and must match the status codes, media types, headers and body schemas the OpenAPI
schema declares. ``bench/reliability.py`` runs the same passes with many more examples.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from hardneg.service.jobs.runner import run_attempt
from hardneg.service.jobs.services import Services
from hardneg.service.jobs.worker import Maintenance
from hardneg.service.settings import Settings
from tests.conftest import TINY_DOCS, TINY_QUERIES, write_beir
from tests.test_service_support import (
    API_KEY,
    AUTH,
    REDIS_URL,
    Processes,
    jsonl,
    purge,
    qrels_tsv,
    service_env,
    unique_prefix,
)

SCHEMATHESIS = [sys.executable, "-m", "schemathesis.cli"]
# the checks that make "no 5xx, nothing the schema does not declare"
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "ignored_auth",
)
PASSES: dict[str, dict[str, str]] = {
    "with_key": AUTH,
    "without_key": {},
    "wrong_key": {"Authorization": "Bearer wrong-" + API_KEY[::-1]},
}
OPEN_OPERATIONS = frozenset({"GET /healthz", "GET /readyz"})
TEST_EXAMPLES = 4  # per operation and pass here; the bench runs many more
MAX_UPLOAD = 64 * 1024


@dataclass(frozen=True)
class Seeds:
    corpora: list[str]
    jobs: list[str]
    artifacts: list[str]
    spare_corpora: list[str]  # for DELETE
    spare_jobs: list[str]


@dataclass
class FuzzReport:
    requests: int = 0
    server_errors: int = 0
    schema_violations: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    operations: dict[str, Counter[int]] = field(default_factory=dict)  # label -> statuses
    failures: list[str] = field(default_factory=list)

    def add(self, other: FuzzReport) -> None:
        self.requests += other.requests
        self.server_errors += other.server_errors
        self.schema_violations += other.schema_violations
        self.statuses.update(other.statuses)
        for label, statuses in other.operations.items():
            self.operations.setdefault(label, Counter()).update(statuses)
        self.failures += other.failures

    def summary(self) -> dict[str, object]:
        return {
            "requests": self.requests,
            "server_errors": self.server_errors,
            "schema_violations": self.schema_violations,
            "operations": len(self.operations),
            "statuses": {str(code): n for code, n in sorted(self.statuses.items())},
            "failures": self.failures[:20],
        }


@dataclass(frozen=True)
class Target:
    base_url: str
    settings: Settings
    seeds: Seeds
    processes: Processes
    operations: frozenset[str]  # "METHOD /path" of every operation in the OpenAPI schema


def _settings(prefix: str, home: Path, allowed: Path) -> Settings:
    return Settings(
        home=home,
        redis_url=REDIS_URL,
        redis_prefix=prefix,
        api_keys=[API_KEY],
        allowed_roots=[allowed],
        max_upload_bytes=MAX_UPLOAD,
    )


def _upload_corpus(client: httpx.Client, name: str, full: bool) -> str:
    created = client.post(f"/v1/corpora?name={name}", content=jsonl(TINY_DOCS))
    assert created.status_code == 201, created.text
    corpus_id = str(created.json()["id"])
    if full:
        queries = client.put(f"/v1/corpora/{corpus_id}/queries", content=jsonl(TINY_QUERIES))
        assert queries.status_code == 200, queries.text
        qrels = client.put(f"/v1/corpora/{corpus_id}/qrels/test", content=qrels_tsv())
        assert qrels.status_code == 200, qrels.text
    return corpus_id


def _submit(client: httpx.Client, corpus_id: str, k1: float) -> str:
    body = {"corpus_id": corpus_id, "params": {"k1": k1}}
    response = client.post("/v1/jobs/evaluate", json=body)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def seed(client: httpx.Client, services: Services) -> Seeds:
    """Real resources for the fuzzer to find: see the module docstring."""
    corpus_id = _upload_corpus(client, "fuzz", full=True)
    done = _submit(client, corpus_id, 1.2)
    assert run_attempt(services, done, 1) == "succeeded"  # what a worker does with it
    queued = _submit(client, corpus_id, 0.9)
    spare_jobs = []
    for k1 in (0.5, 0.6, 0.7):
        job_id = _submit(client, corpus_id, k1)
        assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 202
        spare_jobs.append(job_id)
    artifacts = sorted(client.get(f"/v1/jobs/{done}").json()["artifacts"])
    assert artifacts, "the seeded evaluation job published no artifacts"
    spare_corpora = [_upload_corpus(client, f"spare{i}", full=False) for i in range(3)]
    return Seeds([corpus_id], [done, queued], artifacts, spare_corpora, spare_jobs)


@contextlib.contextmanager
def fuzz_target(root: Path) -> Iterator[Target]:
    """``hardneg serve`` on its own Redis namespace and data folder, seeded; no worker."""
    prefix = unique_prefix()
    allowed = root / "allowed"
    write_beir(allowed / "tiny")
    settings = _settings(prefix, root / "home", allowed)
    env = service_env(
        prefix,
        settings.home,
        HARDNEG_ALLOWED_ROOTS=str(allowed),
        HARDNEG_MAX_UPLOAD_BYTES=str(MAX_UPLOAD),
        HARDNEG_BEIR_BASE_URL="http://127.0.0.1:9",  # nothing downloads: no worker runs
    )
    processes = Processes(env, root / "logs")
    services = Services.connect(settings)
    heartbeat = Maintenance(settings, f"{prefix}.fuzz.{os.getpid()}")
    try:
        processes.serve()
        heartbeat.start()
        with httpx.Client(base_url=processes.base_url, headers=AUTH, timeout=30) as client:
            seeds = seed(client, services)
            schema = client.get("/openapi.json").json()
        operations = frozenset(
            f"{method.upper()} {path}" for path, item in schema["paths"].items() for method in item
        )
        yield Target(processes.base_url, settings, seeds, processes, operations)
    finally:
        heartbeat.stop()
        services.close()
        processes.stop_all()
        purge(prefix)


def _toml(value: object) -> str:
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)  # strings, numbers and lists of them read the same in TOML


def write_config(seeds: Seeds, path: Path, deleting: bool) -> Path:
    """A schemathesis.toml drawing ids from the seeds part of the time.

    The DELETE routes get their own run, last, on the spare corpora and jobs: schemathesis
    reuses ids it saw in responses, so a DELETE running alongside the others would remove the
    seeds they read.
    """
    corpora = seeds.spare_corpora if deleting else seeds.corpora
    jobs = seeds.spare_jobs if deleting else seeds.jobs

    def draw(name: str, probability: float) -> str:
        return _toml({"dictionary": name, "probability": probability})

    lines = [
        "[dictionaries.corpora]",
        f"values = {_toml(corpora)}",
        "[dictionaries.jobs]",
        f"values = {_toml(jobs)}",
        "[dictionaries.artifacts]",
        f"values = {_toml(seeds.artifacts)}",
        "[parameters]",
        f'"path.corpus_id" = {draw("corpora", 0.7)}',
        f'"body.corpus_id" = {draw("corpora", 0.7)}',
        f'"path.job_id" = {draw("jobs", 0.7)}',
        f'"body.params.negatives_job" = {draw("jobs", 0.5)}',
        f'"path.name" = {draw("artifacts", 0.6)}',
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _schemathesis(
    target: Target, headers: Mapping[str, str], max_examples: int, folder: Path, deleting: bool
) -> FuzzReport:
    stage = "delete" if deleting else "main"
    config = write_config(target.seeds, folder / f"{stage}.toml", deleting)
    events = folder / f"{stage}.ndjson"
    command = [
        *SCHEMATHESIS,
        "--config-file",
        str(config),
        "run",
        f"{target.base_url}/openapi.json",
        "--include-method" if deleting else "--exclude-method",
        "DELETE",
        "--checks",
        ",".join(CHECKS),
        "--phases",
        "coverage,fuzzing",
        "--max-examples",
        str(max_examples),
        "--seed",
        "0",  # the same requests every run
        "--workers",
        "1",
        "--suppress-health-check",
        "all",
        "--no-color",
        "--report",
        "ndjson",
        "--report-ndjson-path",
        str(events),
    ]
    for name, value in headers.items():
        command += ["--header", f"{name}: {value}"]
    run = subprocess.run(  # in the scratch folder: schemathesis keeps a cache in its cwd
        command, cwd=folder, capture_output=True, text=True, timeout=1800, check=False
    )
    (folder / f"{stage}.txt").write_text(run.stdout + run.stderr)
    assert events.is_file(), run.stdout[-4000:] + run.stderr[-4000:]
    return read_events(events)


def run_fuzz(
    target: Target, headers: Mapping[str, str], max_examples: int, folder: Path
) -> FuzzReport:
    """Schemathesis's coverage and fuzzing phases on every route: DELETE last, on spares."""
    folder.mkdir(parents=True, exist_ok=True)
    report = _schemathesis(target, headers, max_examples, folder, deleting=False)
    report.add(_schemathesis(target, headers, max_examples, folder, deleting=True))
    return report


def _status(interaction: Mapping[str, object]) -> int | None:
    response = interaction.get("response")
    return int(response["status_code"]) if isinstance(response, Mapping) else None


def _describe(label: str, check: Mapping[str, object], interaction: Mapping[str, object]) -> str:
    failure = check.get("failure_info") or {}
    detail = failure.get("failure", {}) if isinstance(failure, Mapping) else {}
    title = detail.get("title", check.get("name")) if isinstance(detail, Mapping) else ""
    response = interaction.get("response") or {}
    content = response.get("content", {}) if isinstance(response, Mapping) else {}
    body = ""
    if isinstance(content, Mapping) and "$base64" in content:
        body = base64.b64decode(str(content["$base64"])).decode(errors="replace")[:300]
    request = interaction.get("request") or {}
    uri = request.get("uri", "") if isinstance(request, Mapping) else ""
    return f"{label} {uri} -> {_status(interaction)} {title}: {body}"


def read_events(path: Path) -> FuzzReport:
    """Count every request schemathesis sent, its status, and every failed check."""
    report = FuzzReport()
    for line in path.read_text().splitlines():
        event = json.loads(line)
        finished = event.get("ScenarioFinished")
        if not finished:
            continue
        recorder = finished["recorder"]
        label = recorder["label"]
        interactions = recorder.get("interactions", {})
        for case_id, interaction in interactions.items():
            status = _status(interaction)
            report.requests += 1
            statuses = report.operations.setdefault(label, Counter())
            if status is None:
                continue
            report.statuses[status] += 1
            statuses[status] += 1
            if status >= 500:
                report.server_errors += 1
                report.failures.append(_describe(label, {"name": "5xx"}, interaction))
            for check in recorder.get("checks", {}).get(case_id, []):
                if check["status"] == "failure" and check["name"] != "not_a_server_error":
                    report.schema_violations += 1
                    report.failures.append(_describe(label, check, interaction))
    return report


def fuzz_all(target: Target, max_examples: int, folder: Path) -> dict[str, FuzzReport]:
    return {
        name: run_fuzz(target, headers, max_examples, folder / name)
        for name, headers in PASSES.items()
    }


def test_fuzzed_requests_get_no_5xx_and_only_declared_responses(tmp_path: Path) -> None:
    with fuzz_target(tmp_path) as target:
        reports = fuzz_all(target, TEST_EXAMPLES, tmp_path / "fuzz")
        log = target.processes.log_text()
    total = FuzzReport()
    for report in reports.values():
        total.add(report)
    assert total.server_errors == 0 and total.schema_violations == 0, "\n".join(total.failures)
    assert set(total.operations) == target.operations  # every route was fuzzed
    assert total.requests >= 300, total.summary()
    assert API_KEY not in log  # the server log never shows the key, even under fuzzing
    # the key opened what it should: found resources and successes, not only refusals
    assert reports["with_key"].statuses[200] > 0 and reports["with_key"].statuses[404] > 0
    for name in ("without_key", "wrong_key"):
        for label, statuses in reports[name].operations.items():
            if label not in OPEN_OPERATIONS:
                assert set(statuses) <= {401, 405}, (name, label, statuses)
