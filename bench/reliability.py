"""Reliability figures: fuzzing, status polling under load while a model trains, hostile input,
auth, and the outcomes of the fault and concurrency tests.

    python -m bench.reliability [--output bench/results/reliability.json] [--skip-faults]
        [--skip-fuzz] [--skip-load] [--skip-input] [--skip-round-two] [--only SECTION]
        [--fuzz-examples 25] [--clients 200] [--seconds 60] [--pace 1.0] [--api-workers 1]
        [--worker-nice 0]

Everything runs against real processes on loopback: ``hardneg serve`` (uvicorn), ``hardneg
worker`` and Redis on 127.0.0.1:6379 (its own key prefix, removed afterwards).

- fuzz: schemathesis on the service's OpenAPI schema with a key, without and with a wrong one
  (``tests/test_reliability_fuzz.py``, more examples per operation);
- load: a baseline training job runs on a worker (a SciFact slice, bm25 negatives) while
  ``--clients`` wrk connections each poll that job's status every ``--pace`` seconds on average
  (``bench/wrk_status.lua``; wrk comes from ``apt-get install wrk``);
- hostile and auth: the tables of ``tests/test_reliability_input.py`` and
  ``tests/test_reliability_auth.py`` against a real server, each case's status recorded;
- faults: ``tests/test_reliability_faults.py`` and ``tests/test_reliability_concurrency.py``
  run under pytest, each test's outcome recorded;
- round_two: the table of ``tests/test_reliability_round_two.py`` (gzip bombs, parser and OS
  limits, risks), two Authorization headers, every write against a Redis out of memory and a
  read-only replica (``tests/test_reliability_state.py``), 500 idle sockets and a body trickled
  at 1 byte/s, against real servers.

A section that is skipped keeps its figures from the existing results file; ``--only round_two``
runs that section alone.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import shutil
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
from tests.test_reliability_round_two import (
    CASES,
    MAX_DECOMPRESSED,
    RATIO_FLOOR,
    hold_idle_sockets,
    peak_rss_mib,
    round_two_server,
    run_case,
    trickle_body,
    two_authorization_headers,
)
from tests.test_reliability_state import run_refusing_redis
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
WRK_SCRIPT = ROOT / "bench" / "wrk_status.lua"
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


def wrk(base_url: str, job_id: str, clients: int, seconds: int, pace: float) -> str:
    """Run wrk: ``clients`` connections, each polling the job's status every ~``pace`` s."""
    if shutil.which("wrk") is None:
        raise RuntimeError("the load test needs wrk: apt-get install wrk")
    env = os.environ | {"HARDNEG_LOAD_KEY": API_KEY, "HARDNEG_LOAD_PACE": str(pace)}
    command = [
        "wrk",
        f"--threads={min(clients, os.cpu_count() or 1)}",
        f"--connections={clients}",
        f"--duration={seconds}s",
        "--timeout=5s",
        "--latency",
        f"--script={WRK_SCRIPT}",
        f"{base_url}/v1/jobs/{job_id}",
    ]
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=seconds + 60)
    if run.returncode != 0:
        raise RuntimeError(f"wrk failed:\n{run.stdout}{run.stderr}")
    return run.stdout


_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return round(float(number) * _UNITS_MS[unit], 2)


def read_wrk(output: str) -> dict[str, float]:
    """Requests, errors (socket errors and non-2xx/3xx answers), rate and latencies."""
    percentiles = dict(re.findall(r"^\s+(\d+)%\s+(\S+)$", output, flags=re.M))
    requests = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    socket_errors = re.search(r"Socket errors: (.*)$", output, flags=re.M)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = sum(int(n) for n in re.findall(r"\d+", socket_errors.group(1))) if socket_errors else 0
    errors += int(non_2xx.group(1)) if non_2xx else 0
    latency = re.search(r"Latency\s+(\S+)\s+(\S+)\s+(\S+)", output)
    assert latency is not None, output
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    return {
        "requests": requests,
        "errors": errors,
        "requests_per_s": round(float(rate.group(1)), 1) if rate else 0.0,
        "p50_ms": _ms(percentiles["50"]),
        "p75_ms": _ms(percentiles["75"]),
        "p90_ms": _ms(percentiles["90"]),
        "p99_ms": _ms(percentiles["99"]),
        "mean_ms": _ms(latency.group(1)),
        "max_ms": _ms(latency.group(3)),
    }


def process_tree(pid: int) -> list[int]:
    """The process and its children (uvicorn's worker processes)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    kids = [int(k) for k in children.read_text().split()] if children.is_file() else []
    return [pid, *kids]


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


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
            api = process_tree(processes.started[0].pid)
            api_cpu, load_before = cpu_seconds(api), os.getloadavg()[0]
            output = wrk(processes.base_url, job_id, clients, seconds, pace)
            api_cpu, load_after = cpu_seconds(api) - api_cpu, os.getloadavg()[0]
            after = client.get(f"/v1/jobs/{job_id}").json()
            client.post(f"/v1/jobs/{job_id}/cancel", params={"force": True})
            ended = _wait(client, job_id, {"cancelled", "failed", "succeeded"}, 120)
    (root / "wrk.txt").write_text(output)
    figures = read_wrk(output)
    return {
        "clients": clients,
        "seconds": seconds,
        "pace_seconds": pace,
        "offered_requests_per_s": round(clients / pace, 1),
        **figures,
        "api_workers": api_workers,
        "worker_nice": worker_nice,
        # what the API itself spent, and how busy the shared machine was (2 cores)
        "api_cpu_ms_per_request": round(api_cpu * 1000 / max(int(figures["requests"]), 1), 2),
        "load_average_1m": {"before": round(load_before, 2), "after": round(load_after, 2)},
        "route": "GET /v1/jobs/{job_id}",
        "load_generator": "wrk, one connection per client, waits drawn from 0..2*pace",
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


# ---- round two ----------------------------------------------------------------------------------


def run_round_two(root: Path) -> dict[str, object]:
    started = time.perf_counter()
    with round_two_server(root / "server") as server:
        peak_before = peak_rss_mib(server.api_pid)
        cases = [run_case(server, case) for case in CASES]
        peak_after = peak_rss_mib(server.api_pid)
        before = stored_state(server.client, server.home, server.context.corpus)
        response = two_authorization_headers(server)
        after = stored_state(server.client, server.home, server.context.corpus)
        cases.append(
            {
                "name": "two_authorization_headers",
                "status": response.status_code,
                "expected": 401,
                "names_the_problem": "Authorization" in response.text,
                "nothing_stored": before == after,
                "message": response.text[:200],
            }
        )
        idle = hold_idle_sockets(server, 500)
        slow_body = trickle_body(server)
    refusing = run_refusing_redis(root / "redis")
    for mode in ("oom", "readonly"):
        outcomes = refusing[mode]
        assert isinstance(outcomes, dict)
        for name, outcome in outcomes.items():
            cases.append({"name": f"redis_{mode}_{name}", "expected": 503, **outcome})
    unexpected = [c["name"] for c in cases if c["status"] != c["expected"]]
    return {
        "cases": cases,
        "unexpected": unexpected,
        "responses_5xx_not_503": sum(
            int(str(c["status"])) >= 500 and c["status"] != 503 for c in cases
        ),
        # the API's peak resident memory before and after the cases (gzip bombs of 600 MiB and
        # 1 GiB among them): decompression is streamed and bounded
        "api_peak_rss_mib": {"before_cases": peak_before, "after_cases": peak_after},
        "limits": {
            "max_compression_ratio": 100.0,
            "compression_ratio_floor_bytes": RATIO_FLOOR,
            "max_decompressed_bytes": MAX_DECOMPRESSED,
        },
        "idle_sockets": idle,
        "slow_body": slow_body,
        "orphan_folder_swept_at_start": refusing["orphan_swept"],
        "seconds": round(time.perf_counter() - started, 1),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


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
    sections = ("fuzz", "load", "input", "faults", "round_two")
    for section in sections:
        parser.add_argument(f"--skip-{section.replace('_', '-')}", action="store_true")
    parser.add_argument("--only", choices=sections, help="run this section alone")
    args = parser.parse_args()
    if args.only:
        for section in sections:
            setattr(args, f"skip_{section}", section != args.only)
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
        if not args.skip_round_two:
            logger.info("round two: bombs, parser and OS limits, refusing Redis, connections")
            results["round_two"] = run_round_two(scratch / "round-two")
    if args.only:  # the other sections keep the machine they were measured on
        results[args.only]["machine"] = machine_info()
    else:
        results["machine"] = machine_info()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    logger.info("wrote %s", args.output)


if __name__ == "__main__":
    main()
