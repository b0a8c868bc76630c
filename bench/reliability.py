"""Reliability figures: fuzzing, status polling under load while a model trains, hostile input,
auth, and the outcomes of the fault and concurrency tests.

    python -m bench.reliability [--output bench/results/reliability.json] [--skip-faults]
        [--skip-fuzz] [--skip-load] [--skip-input] [--fuzz-examples 25] [--clients 200]
        [--seconds 60] [--pace 1.0] [--api-workers 1] [--worker-nice 0]

Everything runs against real processes on loopback: ``hardneg serve`` (uvicorn), ``hardneg
worker`` and Redis on 127.0.0.1:6379 (its own key prefix, removed afterwards).

- fuzz: schemathesis on the service's OpenAPI schema with a key, without and with a wrong one
  (``tests/test_reliability_fuzz.py``, more examples per operation);
- load: a baseline STAR-style training job runs on a worker (a SciFact slice, bm25 negatives)
  while ``--clients`` locust users each poll that job's status every ``--pace`` seconds;
- hostile and auth: the tables of ``tests/test_reliability_input.py`` and
  ``tests/test_reliability_auth.py`` against a real server, each case's status recorded;
- faults: ``tests/test_reliability_faults.py`` and ``tests/test_reliability_concurrency.py``
  run under pytest, each test's outcome recorded.

A section that is skipped keeps its figures from the existing results file.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import logging
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import httpx

from bench.machine import machine_info
from hardneg.service.api.app import create_app
from hardneg.service.settings import Settings
from tests.conftest import SCIFACT
from tests.test_reliability_auth import (
    API_KEY,
    WRONG_KEY,
    check_refusals,
    protected_routes,
)
from tests.test_reliability_fuzz import PASSES, FuzzReport, fuzz_all, fuzz_target
from tests.test_reliability_input import HOSTILE, MAX_UPLOAD, prepare, send, stored_state
from tests.test_service_pipelines import scifact_slice
from tests.test_service_support import (
    AUTH,
    REDIS_URL,
    Processes,
    purge,
    service_env,
    unique_prefix,
    wait_for,
)

logger = logging.getLogger("bench.reliability")

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = ROOT / "bench" / "results" / "reliability.json"
FAULT_TESTS = ("tests/test_reliability_faults.py", "tests/test_reliability_concurrency.py")
LOCUSTFILE = ROOT / "bench" / "locust_status.py"
TARGET_P99_MS = 50.0
# long enough to outlast the polling; the job is cancelled once the load stops
TRAIN_CONFIG = {"max_steps": 3000, "per_device_batch_size": 4, "max_doc_length": 64}
CLOSED_PORT = "http://127.0.0.1:9"  # nothing is downloaded from anywhere


# ---- fuzz --------------------------------------------------------------------------------------


def run_fuzz(root: Path, examples: int) -> dict[str, object]:
    started = time.perf_counter()
    with fuzz_target(root) as target:
        reports = fuzz_all(target, examples, root / "fuzz")
        operations = len(target.operations)
    total = FuzzReport()
    for report in reports.values():
        total.add(report)
    summary = total.summary()
    return {
        "requests": total.requests,
        "server_errors": total.server_errors,
        "schema_violations": total.schema_violations,
        "operations_fuzzed": len(total.operations),
        "operations_in_schema": operations,
        "examples_per_operation": examples,
        "passes": {
            name: {"headers": sorted(PASSES[name]), **reports[name].summary()} for name in reports
        },
        "statuses": summary["statuses"],
        "failures": summary["failures"],
        "seconds": round(time.perf_counter() - started, 1),
    }


# ---- a served API --------------------------------------------------------------------------------


@contextlib.contextmanager
def served(root: Path, *serve_args: str, **env_extra: str) -> Iterator[tuple[Processes, Path]]:
    """``hardneg serve`` (with these extra arguments) on its own prefix and data folder."""
    prefix = unique_prefix()
    home = root / "home"
    env = service_env(prefix, home, HARDNEG_BEIR_BASE_URL=CLOSED_PORT, **env_extra)
    processes = Processes(env, root / "logs")
    try:
        processes._spawn("serve", "--port", str(processes.port), *serve_args)
        wait_for(lambda: _answers(processes.base_url), 90, "the API to answer")
        yield processes, home
    finally:
        processes.stop_all()
        purge(prefix)


def _answers(base_url: str) -> bool:
    try:
        return httpx.get(f"{base_url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


# ---- load ---------------------------------------------------------------------------------------


def _wait(client: httpx.Client, job_id: str, done: set[str], timeout: float) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        record: dict[str, Any] = client.get(f"/v1/jobs/{job_id}").json()
        return record if record["state"] in done or record["stage"] in done else None

    result: dict[str, Any] = wait_for(reached, timeout, f"job {job_id} to reach {done}")  # type: ignore[assignment]
    return result


def start_training(client: httpx.Client) -> str:
    """Upload a SciFact slice, mine bm25 negatives, start a long training job; its id."""
    corpus, queries, qrels = scifact_slice(SCIFACT)
    created = client.post("/v1/corpora?name=load", content=corpus)
    assert created.status_code == 201, created.text
    corpus_id = created.json()["id"]
    assert client.put(f"/v1/corpora/{corpus_id}/queries", content=queries).is_success
    for split, tsv in qrels.items():
        assert client.put(f"/v1/corpora/{corpus_id}/qrels/{split}", content=tsv).is_success
    mine = client.post(
        "/v1/jobs/mine",
        json={"corpus_id": corpus_id, "params": {"method": "bm25", "num_negatives": 3}},
    )
    mined = _wait(client, mine.json()["id"], {"succeeded", "failed"}, 300)
    assert mined["state"] == "succeeded", mined
    params = {
        "trainer": "baseline",
        "negatives_job": mined["id"],
        "eval_split": None,
        "config": TRAIN_CONFIG,
    }
    train = client.post("/v1/jobs/train", json={"corpus_id": corpus_id, "params": params})
    assert train.status_code == 202, train.text
    job_id = str(train.json()["id"])
    _wait(client, job_id, {"training baseline", "failed", "succeeded"}, 300)
    return job_id


def locust(base_url: str, job_id: str, clients: int, seconds: int, pace: float, out: Path) -> None:
    env = os.environ | {
        "HARDNEG_LOAD_JOB": job_id,
        "HARDNEG_LOAD_KEY": API_KEY,
        "HARDNEG_LOAD_PACE": str(pace),
    }
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--users",
        str(clients),
        "--spawn-rate",
        str(clients),
        "--run-time",
        f"{seconds}s",
        "--host",
        base_url,
        "--csv",
        str(out / "locust"),
        "--only-summary",
        "--exit-code-on-error",
        "0",
        "--loglevel",
        "WARNING",
    ]
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=seconds + 120)
    (out / "locust.txt").write_text(run.stdout + run.stderr)
    if run.returncode != 0:
        raise RuntimeError(f"locust failed:\n{run.stderr[-3000:]}")


def read_locust(out: Path) -> dict[str, float]:
    with (out / "locust_stats.csv").open() as handle:
        rows = {row["Name"]: row for row in csv.DictReader(handle)}
    row = rows["Aggregated"]
    return {
        "requests": int(row["Request Count"]),
        "errors": int(row["Failure Count"]),
        "requests_per_s": round(float(row["Requests/s"]), 1),
        "p50_ms": float(row["50%"]),
        "p90_ms": float(row["90%"]),
        "p99_ms": float(row["99%"]),
        "max_ms": round(float(row["Max Response Time"]), 1),
        "mean_ms": round(float(row["Average Response Time"]), 2),
    }


def run_load(
    root: Path, clients: int, seconds: int, pace: float, api_workers: int, worker_nice: int
) -> dict[str, object]:
    with served(root, "--workers", str(api_workers)) as (processes, _home):
        worker = processes.worker()
        # the work horses it forks inherit this: training yields the CPU to the API first
        os.setpriority(os.PRIO_PROCESS, worker.pid, worker_nice)
        with httpx.Client(base_url=processes.base_url, headers=AUTH, timeout=60) as client:
            wait_for(lambda: client.get("/readyz").status_code == 200, 120, "a ready worker")
            job_id = start_training(client)
            before = client.get(f"/v1/jobs/{job_id}").json()
            locust(processes.base_url, job_id, clients, seconds, pace, root)
            after = client.get(f"/v1/jobs/{job_id}").json()
            client.post(f"/v1/jobs/{job_id}/cancel", params={"force": True})
            ended = _wait(client, job_id, {"cancelled", "failed", "succeeded"}, 120)
    figures = read_locust(root)
    return {
        "clients": clients,
        "seconds": seconds,
        "pace_seconds": pace,
        "offered_requests_per_s": round(clients / pace, 1),
        **figures,
        "api_workers": api_workers,
        "worker_nice": worker_nice,
        "route": "GET /v1/jobs/{job_id}",
        "training": {
            "trainer": "baseline",
            "state_during_load": after["state"],
            "steps_before": before["done"],
            "steps_after": after["done"],
            "state_after_cancel": ended["state"],
        },
        "target": {
            "errors": 0,
            "p99_ms": TARGET_P99_MS,
            "met": figures["errors"] == 0 and figures["p99_ms"] < TARGET_P99_MS,
        },
    }


# ---- hostile input and auth ----------------------------------------------------------------------


def run_input_and_auth(root: Path) -> tuple[dict[str, object], dict[str, object]]:
    allowed = root / "allowed"
    allowed.mkdir(parents=True, exist_ok=True)
    extra = {"HARDNEG_MAX_UPLOAD_BYTES": str(MAX_UPLOAD), "HARDNEG_ALLOWED_ROOTS": str(allowed)}
    with served(root, "--log-level", "debug", **extra) as (processes, home):
        with httpx.Client(base_url=processes.base_url, headers=AUTH, timeout=120) as client:
            context = prepare(client, allowed)
            hostile: dict[str, object] = {}
            for case in HOSTILE:
                before = stored_state(client, home, context.corpus)
                response = send(client, case, context)
                hostile[case.name] = {
                    "status": response.status_code,
                    "expected": case.status,
                    "names_the_problem": case.names in response.text,
                    "nothing_stored": stored_state(client, home, context.corpus) == before,
                    "message": response.text[:200],
                }
        settings = Settings(home=home, redis_url=REDIS_URL, redis_prefix="unused")
        endpoints = protected_routes(create_app(settings))
        with httpx.Client(base_url=processes.base_url, timeout=30) as anonymous:
            report = check_refusals(anonymous, endpoints)
        log = "\n".join(p.read_text(errors="replace") for p in processes.logs.glob("*.log"))
    auth = {
        "protected_routes": len(endpoints),
        "mutating_routes": sum(e.method in {"POST", "PUT", "PATCH", "DELETE"} for e in endpoints),
        **report.summary(),
        "key_in_server_log": API_KEY in log or WRONG_KEY in log,
        "server_log_bytes": len(log),
    }
    return hostile, auth


# ---- faults -------------------------------------------------------------------------------------


def run_faults(root: Path) -> dict[str, object]:
    present = [name for name in FAULT_TESTS if (ROOT / name).is_file()]
    if not present:
        return {}
    report = root / "faults.xml"
    command = [sys.executable, "-m", "pytest", *present, "-q", f"--junitxml={report}"]
    started = time.perf_counter()
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    (root / "faults.txt").write_text(run.stdout + run.stderr)
    outcomes: dict[str, object] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        module = case.get("classname", "").rsplit(".", 1)[-1]
        outcome = "passed"
        for tag in ("failure", "error", "skipped"):
            if case.find(tag) is not None:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
        outcomes[f"{module}::{case.get('name')}"] = {
            "outcome": outcome,
            "seconds": round(float(case.get("time", 0)), 1),
        }
    outcomes["_summary"] = {
        "files": present,
        "exit_code": run.returncode,
        "seconds": round(time.perf_counter() - started, 1),
    }
    return outcomes


# ---- main ---------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--fuzz-examples", type=int, default=25)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument(
        "--pace", type=float, default=1.0, help="seconds between one client's polls"
    )
    parser.add_argument("--api-workers", type=int, default=1, help="uvicorn processes")
    parser.add_argument(
        "--worker-nice", type=int, default=0, help="CPU niceness of the worker and its jobs"
    )
    for section in ("fuzz", "load", "input", "faults"):
        parser.add_argument(f"--skip-{section}", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    results: dict[str, Any] = json.loads(args.output.read_text()) if args.output.is_file() else {}
    with TemporaryDirectory(prefix="hardneg-reliability-") as temp:
        scratch = Path(temp)
        if not args.skip_fuzz:
            logger.info("fuzzing with %d examples per operation", args.fuzz_examples)
            results["fuzz"] = run_fuzz(scratch / "fuzz", args.fuzz_examples)
        if not args.skip_input:
            logger.info("hostile input and auth")
            results["hostile"], results["auth"] = run_input_and_auth(scratch / "input")
        if not args.skip_load:
            logger.info("load: %d clients for %d s while training", args.clients, args.seconds)
            load_dir = scratch / "load"
            load_dir.mkdir()
            results["load"] = run_load(
                load_dir, args.clients, args.seconds, args.pace, args.api_workers, args.worker_nice
            )
        if not args.skip_faults:
            logger.info("fault and concurrency tests")
            results["faults"] = run_faults(scratch)
    results["machine"] = machine_info()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    logger.info("wrote %s", args.output)


if __name__ == "__main__":
    main()
