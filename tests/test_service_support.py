"""Shared pieces of the service tests: isolated Redis namespaces, real processes, a BEIR mirror.

Every test run uses its own key prefix (and RQ queue, and job ids that embed it) in a dedicated
Redis database, and deletes exactly those keys afterwards.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import redis

from tests.conftest import TINY_DOCS, TINY_QRELS, TINY_QUERIES

REDIS_DB = 9
REDIS_URL = f"redis://127.0.0.1:6379/{REDIS_DB}"
API_KEY = "test-key-" + uuid.uuid4().hex
AUTH = {"Authorization": f"Bearer {API_KEY}"}
HARDNEG = [sys.executable, "-m", "hardneg.service.cli"]  # the `hardneg` command


def unique_prefix() -> str:
    return f"hntest{uuid.uuid4().hex[:10]}"


def purge(prefix: str) -> int:
    """Delete every key of this test run (ours and RQ's, which embed the prefix)."""
    client = redis.Redis.from_url(REDIS_URL)
    removed = 0
    for key in list(client.scan_iter(match=f"*{prefix}*", count=1000)):
        removed += int(client.delete(key))
    for shared in (b"rq:workers", b"rq:queues"):
        for member in client.smembers(shared):
            if prefix.encode() in member:
                client.srem(shared, member)
    client.close()
    return removed


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def jsonl(rows: Sequence[Mapping[str, object]]) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def qrels_tsv(rows: list[tuple[str, str, int]] = TINY_QRELS) -> bytes:
    lines = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t{s}" for q, d, s in rows]
    return ("\n".join(lines) + "\n").encode()


def service_env(prefix: str, home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HARDNEG_")}
    env |= {
        "HARDNEG_HOME": str(home),
        "HARDNEG_REDIS_URL": REDIS_URL,
        "HARDNEG_REDIS_PREFIX": prefix,
        "HARDNEG_API_KEYS": API_KEY,
        "PYTHONUNBUFFERED": "1",
        # the suite's fp32 numbers (a train job's metrics_after against an evaluate job of its
        # model); the exported backends have their own tests (tests/test_encoder_backends.py)
        "HARDNEG_ENCODER_BACKEND": "torch",
    }
    return env | extra


@dataclass
class Processes:
    """``hardneg serve`` and ``hardneg worker`` as real subprocesses, logs in ``logs``."""

    env: dict[str, str]
    logs: Path
    port: int = field(default_factory=free_port)
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _spawn(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        self.logs.mkdir(parents=True, exist_ok=True)
        log = (self.logs / f"{args[0]}-{len(self.started)}.log").open("wb")
        process = subprocess.Popen(
            [*HARDNEG, *args],
            env=env or self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.started.append(process)
        return process

    def serve(self) -> subprocess.Popen[bytes]:
        process = self._spawn("serve", "--port", str(self.port), "--log-level", "warning")
        wait_for(lambda: _answers(self.base_url + "/healthz"), 60, "the API to answer")
        return process

    def worker(self, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        return self._spawn("worker", env=env)

    def log_text(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}"
            for p in sorted(self.logs.glob("*.log"))
        )

    def stop_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.started:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").is_file() and _state(pid) != "Z"


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "Z"


@dataclass
class Stack:
    """A running API and worker, a client with the key, and the BEIR mirror they download from."""

    processes: Processes
    client: httpx.Client
    mirror: BeirMirror
    home: Path
    worker: subprocess.Popen[bytes] | None = None

    def ensure_worker(self) -> subprocess.Popen[bytes]:
        if self.worker is None or self.worker.poll() is not None:
            self.worker = self.processes.worker()
        wait_for(lambda: self.client.get("/readyz").status_code == 200, 90, "a ready worker")
        return self.worker

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.client.get(f"/v1/jobs/{job_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def wait_job(self, job_id: str, states: set[str], timeout: float = 90) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            record = self.job(job_id)
            return record if record["state"] in states else None

        try:
            return wait_for(reached, timeout, f"job {job_id} to reach {states}")  # type: ignore[return-value]
        except AssertionError:
            raise AssertionError(f"{self.job(job_id)}\n{self.processes.log_text()}") from None

    def metric(self, name: str, labels: str = "") -> float:
        text = self.client.get("/metrics").text
        match = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, flags=re.M)
        return float(match.group(1)) if match else 0.0

    def kill_run(self, record: dict[str, Any]) -> None:
        """SIGKILL the worker and its work horse: the machine running the job is gone."""
        assert self.worker is not None
        self.worker.send_signal(signal.SIGKILL)
        os.kill(int(record["pid"]), signal.SIGKILL)
        self.worker.wait()
        wait_for(lambda: not alive(int(record["pid"])), 10, "the work horse to die")


@contextlib.contextmanager
def running_stack(root: Path, **settings: str) -> Iterator[Stack]:
    """``hardneg serve`` + one ``hardneg worker`` on their own Redis namespace and data folder."""
    prefix = unique_prefix()
    with BeirMirror() as mirror:
        # the mirror's made-up dataset names have no published checksum
        env = service_env(
            prefix,
            root / "home",
            HARDNEG_BEIR_BASE_URL=mirror.url,
            HARDNEG_ALLOW_UNLISTED_DATASETS="true",
            **settings,
        )
        processes = Processes(env, root / "logs")
        try:
            processes.serve()
            with httpx.Client(base_url=processes.base_url, headers=AUTH, timeout=30) as client:
                built = Stack(processes, client, mirror, root / "home")
                built.ensure_worker()
                yield built
        finally:
            processes.stop_all()
            purge(prefix)


# ---- a BEIR mirror on loopback: real HTTP, real zips, controllable speed ---------------------


def tiny_beir_zip(name: str, filler_bytes: int) -> bytes:
    """A BEIR zip (``<name>/corpus.jsonl`` ...), padded with incompressible filler."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(f"{name}/corpus.jsonl", jsonl(TINY_DOCS))
        archive.writestr(f"{name}/queries.jsonl", jsonl(TINY_QUERIES))
        archive.writestr(f"{name}/qrels/test.tsv", qrels_tsv())
        archive.writestr(f"{name}/filler.bin", random.Random(7).randbytes(filler_bytes))
    return buffer.getvalue()


class BeirMirror:
    """Serves ``/<name>.zip`` with Range support. The name's first word sets the pace:
    ``fast-*`` at once, ``slow-*`` 2 KiB every 50 ms, ``stall-*`` 4 KiB then nothing."""

    def __init__(self, filler_bytes: int = 160 * 1024) -> None:
        self.filler_bytes = filler_bytes
        self.requests: list[tuple[str, int]] = []  # (name, first byte asked for)
        self.sent: dict[str, int] = {}
        self.closing = threading.Event()
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                mirror.handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> BeirMirror:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        name = request.path.strip("/").removesuffix(".zip")
        if not request.path.endswith(".zip"):
            request.send_error(404)
            return
        body = tiny_beir_zip(name, self.filler_bytes)
        start = 0
        ranged = request.headers.get("Range", "")
        if ranged.startswith("bytes="):
            start = int(ranged.removeprefix("bytes=").split("-")[0] or 0)
        self.requests.append((name, start))
        if start >= len(body):
            request.send_response(416)
            request.end_headers()
            return
        request.send_response(206 if start else 200)
        if start:
            request.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        request.send_header("Content-Length", str(len(body) - start))
        request.end_headers()
        self._send(request, name, body[start:])

    def _send(self, request: BaseHTTPRequestHandler, name: str, data: bytes) -> None:
        pace = name.split("-", 1)[0]
        chunk = {"slow": 2048, "stall": 4096}.get(pace, len(data))
        try:
            for offset in range(0, len(data), chunk):
                request.wfile.write(data[offset : offset + chunk])
                request.wfile.flush()
                self.sent[name] = self.sent.get(name, 0) + len(data[offset : offset + chunk])
                if pace == "stall":
                    self.closing.wait(120)
                    return
                if pace == "slow" and self.closing.wait(0.05):
                    return
        except (BrokenPipeError, ConnectionResetError):
            return


def corpus_files_left(home: Path) -> list[Path]:
    """Partial or temporary files anywhere under the data directory."""
    return [p for p in home.rglob("*") if p.name.endswith((".tmp", ".part"))]


def iter_events(record: dict[str, object]) -> Iterator[str]:
    events = record.get("events") or []
    assert isinstance(events, list)
    yield from (str(e) for e in events)
