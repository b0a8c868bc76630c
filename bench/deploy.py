"""The compose stack, built and run for real with podman, smoke-tested through the API only.

    python -m bench.deploy [--keep] [--output bench/results/deploy.json]

1. build: the local Debian base (debootstrap), the python and redis stand-ins and the CPU image
   from docker/Dockerfile.cpu (bench.deploy_engine);
2. healthy: ``podman-compose up`` of compose.yaml's redis (AOF), cache, api and worker-cpu under
   the project ``hardneg-smoke``; /readyz answers 200 and each health check passes;
3. upload: a SciFact slice (a few hundred documents, train and test queries, qrels);
4. mine: a BM25 mining job; 5. train: a short STAR job; 6. download: its model.tar.gz, loaded
   with sentence-transformers;
7. worker_killed_resumed: a longer STAR job, the worker container SIGKILLed past the first
   checkpoint, a worker restarted: the job's next attempt resumes from that checkpoint;
8. redis_restarted: the redis container restarted; every job record, result and corpus is still
   there, and a new job runs;
then ``podman-compose down`` and its volumes removed (``--keep`` leaves the stack up).
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import io
import json
import logging
import os
import re
import secrets
import signal
import socket
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench import deploy_engine as engine
from bench.beir_slice import beir_slice
from bench.machine import machine_info

logger = logging.getLogger("bench.deploy")
PROJECT = "hardneg-smoke"
SERVICES = ("redis", "cache", "api", "worker-cpu")
TRAIN_QUERIES, TEST_QUERIES, OTHER_DOCS, TEXT_CHARS = 60, 30, 150, 300
# sized for a loaded 2-core CPU (a STAR step of 4 queries takes seconds there)
SHORT = {"max_steps": 2, "per_device_batch_size": 4, "max_doc_length": 64, "logging_steps": 1}
LONG = SHORT | {"max_steps": 10, "save_steps": 3}
FINISHED = {"succeeded", "failed", "cancelled"}


@dataclass
class Smoke:
    """The running stack seen from outside: an HTTP client and the compose project."""

    client: httpx.Client
    compose: engine.Compose
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)

    def step(self, name: str, action: Callable[[], str]) -> None:
        """Time one step; a failure is recorded with its reason and ends the run."""
        started = time.monotonic()
        try:
            detail, ok = action(), True
        except Exception as exc:
            detail, ok = f"{type(exc).__name__}: {exc}", False
        seconds = round(time.monotonic() - started, 1)
        self.steps[name] = {"ok": ok, "seconds": seconds, "detail": detail}
        logger.info("%s: %s in %.1fs: %s", name, "ok" if ok else "FAILED", seconds, detail)
        if not ok:
            raise StepFailedError(name)

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.client.get(f"/v1/jobs/{job_id}")
        response.raise_for_status()
        return dict(response.json())

    def wait_job(self, job_id: str, timeout: float = 600) -> dict[str, Any]:
        record = wait_for(lambda: (r := self.job(job_id))["state"] in FINISHED and r, timeout)
        if record["state"] != "succeeded":
            raise RuntimeError(f"job {job_id} {record['state']}: {record.get('error')}")
        return dict(record)

    def submit(self, kind: str, body: dict[str, Any]) -> str:
        response = self.client.post(f"/v1/jobs/{kind}", json=body)
        if response.status_code not in (200, 202):
            raise RuntimeError(f"POST /v1/jobs/{kind}: {response.status_code} {response.text}")
        return str(response.json()["id"])


class StepFailedError(RuntimeError):
    pass


def wait_for(probe: Callable[[], Any], timeout: float, interval: float = 0.5) -> Any:
    """Poll until ``probe`` returns something truthy; transport errors count as not yet."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if value := probe():
                return value
        except (httpx.TransportError, httpx.HTTPStatusError):
            pass
        time.sleep(interval)
    raise TimeoutError(f"gave up after {timeout:.0f}s")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---- the steps --------------------------------------------------------------------------------


def healthy(smoke: Smoke, started: float) -> str:
    wait_for(lambda: smoke.client.get("/readyz").status_code == 200, 300)
    smoke.facts["seconds_to_healthy"] = round(time.monotonic() - started, 1)
    checked = []
    for service in ("redis", "cache", "api"):  # the compose file's own health checks, run now
        name = smoke.compose.container(service)
        wait_for(lambda n=name: engine.healthcheck(n), 60)
        checked.append(service)
    ready = smoke.client.get("/readyz").json()
    seconds = smoke.facts["seconds_to_healthy"]
    return f"/readyz 200 {seconds}s after `up` ({ready}); health checks pass: {checked}"


def upload(smoke: Smoke, data: Path) -> str:
    chosen = beir_slice(data, TRAIN_QUERIES, TEST_QUERIES, OTHER_DOCS, TEXT_CHARS)
    corpus, queries, qrels = gzip.compress(chosen.corpus), chosen.queries, chosen.qrels
    created = smoke.client.post("/v1/corpora", params={"name": "scifact-smoke"}, content=corpus)
    if created.status_code != 201:
        raise RuntimeError(f"upload: {created.status_code} {created.text}")
    corpus_id = str(created.json()["id"])
    smoke.client.put(f"/v1/corpora/{corpus_id}/queries", content=queries).raise_for_status()
    for split, tsv in qrels.items():
        smoke.client.put(f"/v1/corpora/{corpus_id}/qrels/{split}", content=tsv).raise_for_status()
    view = smoke.client.get(f"/v1/corpora/{corpus_id}").json()
    smoke.facts["corpus_id"] = corpus_id
    return f"corpus {corpus_id}: {json.dumps(view)[:300]}"


def mine(smoke: Smoke) -> str:
    body = {
        "corpus_id": smoke.facts["corpus_id"],
        "params": {"method": "bm25", "split": "train", "num_negatives": 5},
    }
    job = smoke.wait_job(smoke.submit("mine", body))
    page = smoke.client.get(f"/v1/jobs/{job['id']}/results", params={"limit": 500}).json()
    with_negatives = sum(bool(item.get("negative_ids")) for item in page["items"])
    if not with_negatives:
        raise RuntimeError(f"no query got a negative: {page}")
    smoke.facts["mined_job"] = job["id"]
    files = sorted(job["artifacts"])
    return f"job {job['id']}: {page['total']} queries, {with_negatives} with negatives; {files}"


def star_body(smoke: Smoke, config: dict[str, Any], force: bool = False) -> dict[str, Any]:
    params = {"trainer": "star", "negatives_job": smoke.facts["mined_job"], "config": config}
    return {"corpus_id": smoke.facts["corpus_id"], "params": params, "force": force}


def train(smoke: Smoke) -> str:
    job = smoke.wait_job(smoke.submit("train", star_body(smoke, SHORT)))
    smoke.facts["trained_job"] = job["id"]
    stats = job["stats"]
    before, after = stats["metrics_before"]["ndcg@10"], stats["metrics_after"]["ndcg@10"]
    return f"STAR job {job['id']}: {stats['steps']} steps, test nDCG@10 {before:.4f} -> {after:.4f}"


def download(smoke: Smoke) -> str:
    from sentence_transformers import SentenceTransformer

    job_id = smoke.facts["trained_job"]
    archive = smoke.client.get(f"/v1/jobs/{job_id}/artifacts/model.tar.gz")
    archive.raise_for_status()
    with tempfile.TemporaryDirectory() as folder:
        with tarfile.open(fileobj=io.BytesIO(archive.content)) as tar:
            tar.extractall(folder, filter="data")
        model = SentenceTransformer(str(Path(folder) / "model"), device="cpu")
        shape = model.encode(["a query about cells", "a passage about cells"]).shape
    if shape != (2, 384):
        raise RuntimeError(f"unexpected embedding shape {shape}")
    return f"model.tar.gz {len(archive.content) / 1e6:.1f} MB loaded; encode -> {shape}"


def kill_worker_and_resume(smoke: Smoke) -> str:
    job_id = smoke.submit("train", star_body(smoke, LONG, force=True))
    save = LONG["save_steps"]

    def past_checkpoint() -> dict[str, Any] | None:
        record = smoke.job(job_id)
        if record["state"] in FINISHED:
            raise RuntimeError(f"job {job_id} ended before the kill: {record['state']}")
        training = record["state"] == "running" and record["stage"] == "training star"
        return record if training and record["done"] > save else None

    running = wait_for(past_checkpoint, 600, interval=0.3)
    worker = smoke.compose.container("worker-cpu")
    restarts = int(podman_inspect(worker, "{{.RestartCount}}"))
    # SIGKILL the container's main process from the host: a crash, not a `podman stop`, so
    # compose's `restart: unless-stopped` applies (`podman kill` counts as stopped by the user)
    os.kill(int(podman_inspect(worker, "{{.State.Pid}}")), signal.SIGKILL)
    killed_at = running["done"]
    restarted_by = "restart policy"
    try:
        wait_for(
            lambda: (
                int(podman_inspect(worker, "{{.RestartCount}}")) > restarts
                and podman_inspect(worker, "{{.State.Status}}") == "running"
            ),
            60,
        )
    except TimeoutError:
        engine.run(["podman", "start", worker])
        restarted_by = "podman start (the restart policy did not act)"
    done = smoke.wait_job(job_id, 900)
    events = "\n".join(done["events"])
    resumed = re.search(r"attempt (\d+) resumes from the checkpoint at step (\d+)", events)
    if "attempt 1 lost" not in events or resumed is None:
        raise RuntimeError(f"no resume in the events: {events[-1500:]}")
    if done["stats"]["steps"] != LONG["max_steps"]:
        raise RuntimeError(f"ended after {done['stats']['steps']} steps")
    return (
        f"job {job_id}: worker killed at step {killed_at}/{LONG['max_steps']}, restarted by "
        f"{restarted_by}; attempt {resumed.group(1)} resumed from step {resumed.group(2)} and "
        f"finished {done['stats']['steps']} steps (test nDCG@10 "
        f"{done['stats']['metrics_after']['ndcg@10']:.4f})"
    )


def podman_inspect(container: str, template: str) -> str:
    return engine.run(["podman", "inspect", "--format", template, container]).strip()


def everything(smoke: Smoke) -> dict[str, Any]:
    """Every job record, every corpus and the mining job's results, as the API shows them."""
    jobs = smoke.client.get("/v1/jobs", params={"limit": 500}).json()["items"]
    corpora = smoke.client.get("/v1/corpora", params={"limit": 500}).json()["items"]
    results = smoke.client.get(
        f"/v1/jobs/{smoke.facts['mined_job']}/results", params={"limit": 500}
    ).json()
    return {"jobs": {j["id"]: j for j in jobs}, "corpora": corpora, "results": results}


def restart_redis(smoke: Smoke) -> str:
    before = everything(smoke)
    redis = smoke.compose.container("redis")
    aof = engine.run(["podman", "exec", redis, "redis-cli", "config", "get", "appendonly"]).split()
    first = engine.run(["podman", "exec", redis, "redis-cli", "info", "server"])
    engine.run(["podman", "restart", redis])
    wait_for(lambda: smoke.client.get("/readyz").status_code == 200, 120)
    second = engine.run(["podman", "exec", redis, "redis-cli", "info", "server"])
    run_ids = [re.search(r"run_id:(\w+)", info).group(1) for info in (first, second)]  # type: ignore[union-attr]
    if run_ids[0] == run_ids[1]:
        raise RuntimeError("redis was not restarted (same run_id)")
    after = everything(smoke)
    lost = sorted(set(before["jobs"]) - set(after["jobs"]))
    finished = {j: job for j, job in before["jobs"].items() if job["state"] in FINISHED}
    changed = sorted(j for j, job in finished.items() if after["jobs"].get(j) != job)
    same = before["corpora"] == after["corpora"] and before["results"] == after["results"]
    if lost or changed or not same:
        raise RuntimeError(f"lost jobs {lost}, changed {changed}, or corpora/results differ")
    body = {"corpus_id": smoke.facts["corpus_id"], "params": {"retriever": "bm25"}}
    evaluated = smoke.wait_job(smoke.submit("evaluate", body), 300)  # workers rode it out
    return (
        f"appendonly={aof[-1]}; run_id {run_ids[0][:8]} -> {run_ids[1][:8]}; "
        f"{len(after['jobs'])} job records, {len(after['corpora'])} corpora and "
        f"{after['results']['total']} mined results unchanged; a BM25 evaluate job afterwards "
        f"succeeded (nDCG@10 {evaluated['stats']['metrics']['ndcg@10']:.4f})"
    )


# ---- the run ----------------------------------------------------------------------------------


def smoke_run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    result: dict[str, Any] = {"engine": engine.configure(workdir, args.storage_driver)}
    key, port = secrets.token_hex(32), free_port()
    datasets = workdir / "datasets"
    datasets.mkdir()
    compose = engine.Compose(
        PROJECT,
        {
            "HARDNEG_API_KEYS": key,
            "API_PORT": str(port),
            "DATASETS_DIR": str(datasets),
            "REDIS_IMAGE": engine.REDIS_IMAGE,
        },
    )
    headers = {"Authorization": f"Bearer {key}"}
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=60)
    smoke = Smoke(client, compose)
    build: dict[str, float] = {}

    def build_images() -> str:
        build["debian-base"] = round(engine.debian_base(workdir), 1)
        for image, seconds in engine.stand_in_images(workdir).items():
            build[image] = round(seconds, 1)
        build[engine.CPU_IMAGE] = round(engine.cpu_image(args.wheels, args.no_cache), 1)
        cache = "no layer cache" if args.no_cache else "layer cache allowed"
        return f"seconds per image ({cache} for {engine.CPU_IMAGE}): {build}"

    try:
        smoke.step("build", build_images)
        started = time.monotonic()
        compose("up", "-d", "--no-build", *SERVICES)
        smoke.step("healthy", lambda: healthy(smoke, started))
        smoke.step("upload", lambda: upload(smoke, args.data))
        smoke.step("mine", lambda: mine(smoke))
        smoke.step("train", lambda: train(smoke))
        smoke.step("download", lambda: download(smoke))
        smoke.step("worker_killed_resumed", lambda: kill_worker_and_resume(smoke))
        smoke.step("redis_restarted", lambda: restart_redis(smoke))
    except (StepFailedError, RuntimeError) as exc:
        logger.error("stopped: %s", exc)
        for service in ("api", "worker-cpu"):
            with contextlib.suppress(RuntimeError):
                logger.error("%s logs:\n%s", service, compose.logs(service))
    finally:
        client.close()
        if not args.keep:
            result["left_behind"] = compose.down()
    images = [engine.CPU_IMAGE, engine.PYTHON_IMAGE, engine.REDIS_IMAGE, engine.DEBIAN_IMAGE]
    result |= {
        "ok": len(smoke.steps) == 8 and all(s["ok"] for s in smoke.steps.values()),
        "steps": smoke.steps,
        "build_seconds": build,
        "image_size_mb": {i: engine.image_size_mb(i) for i in images if engine.image_exists(i)},
        "seconds_to_healthy": smoke.facts.get("seconds_to_healthy"),
        "services": list(SERVICES),
        "compose_project": PROJECT,
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/beir/scifact"))
    parser.add_argument(
        "--wheels", type=Path, default=Path("/opt/wheels"), help="holds the CPU torch wheel"
    )
    parser.add_argument("--storage-driver", default=None, help="e.g. vfs where overlay fails")
    parser.add_argument("--no-cache", action="store_true", help="build the CPU image cold")
    parser.add_argument("--keep", action="store_true", help="leave the stack and its volumes up")
    parser.add_argument("--output", type=Path, default=Path("bench/results/deploy.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    load = Path("/proc/loadavg").read_text().split()[:3]
    with tempfile.TemporaryDirectory(prefix="hardneg-deploy-") as workdir:
        result = smoke_run(args, Path(workdir))
    result["machine"] = machine_info() | {"load_average_at_start": load}
    result["command"] = " ".join(["python -m bench.deploy", *sys.argv[1:]])
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    logger.info("wrote %s: ok=%s", args.output, result["ok"])
    if not result["ok"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
