"""podman and podman-compose for ``bench.deploy``: the engine's settings, base images, builds.

What makes podman work on this kind of machine (no image registry, setrlimit refused, cgroups
crun cannot use), all done here rather than in the host's configuration:

1. a ``containers.conf`` of our own (``CONTAINERS_CONF``): ``default_ulimits = []`` and the
   ``runc`` runtime;
2. a Debian root filesystem from ``debootstrap`` (the mirror apt already uses), imported as
   ``localhost/debian-base:bookworm``; the python and redis stand-ins are built on it
   (``docker/Dockerfile.debian-python``, ``docker/Dockerfile.redis``), the first one trusting
   the host's local CA certificates so pip reaches PyPI through an intercepting proxy;
3. the CPU torch wheel served from a loopback index when the host has it (``/opt/wheels``) and
   download.pytorch.org is not reachable; builds run with ``--network host`` to reach it.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
DEBIAN_IMAGE = "localhost/debian-base:bookworm"
PYTHON_IMAGE = "localhost/python:3.11-bookworm"
REDIS_IMAGE = "localhost/redis:7-bookworm"
CPU_IMAGE = "localhost/hardneg:cpu"
TORCH_WHEEL = "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"
CONTAINERS_CONF = '[containers]\ndefault_ulimits = []\n\n[engine]\nruntime = "runc"\n'
LOCAL_CA = Path("/usr/local/share/ca-certificates")
TORCH_INDEX_PORT = 18777


def run(command: Sequence[str], *, timeout: float = 1800, check: bool = True) -> str:
    """Run a command, log it, return its stdout (stderr folded in on failure)."""
    logger.info("$ %s", " ".join(command))
    done = subprocess.run(list(command), capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        tail = (done.stdout + done.stderr)[-4000:]
        raise RuntimeError(f"{command[0]} {command[1]} exited {done.returncode}:\n{tail}")
    return done.stdout


def configure(workdir: Path, storage_driver: str | None) -> dict[str, str]:
    """Point podman at our containers.conf (and a storage driver, when asked); return facts."""
    conf = workdir / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
    os.environ["CONTAINERS_CONF"] = str(conf)
    if storage_driver:
        os.environ["STORAGE_DRIVER"] = storage_driver
    info = json.loads(run(["podman", "info", "--format", "json"]))
    compose_version = run(["podman-compose", "version"], check=False)
    found = re.search(r"podman-compose\w*\s+version\s+(\S+)", compose_version)
    return {
        "engine": "podman",
        "podman": str(info["version"]["Version"]),
        "podman_compose": found.group(1) if found else compose_version.strip()[-40:],
        "runtime": "runc",
        "storage_driver": str(info["store"]["graphDriverName"]),
        "network_backend": str(info["host"].get("networkBackend", "")),
    }


def image_exists(name: str) -> bool:
    return subprocess.run(["podman", "image", "exists", name], check=False).returncode == 0


def image_size_mb(name: str) -> float:
    size = run(["podman", "image", "inspect", "--format", "{{.Size}}", name]).strip()
    return round(int(size) / 1e6, 1)


def apt_mirror() -> str:
    """The Debian mirror the host's apt uses (deb822 ``URIs:`` or one-line ``deb`` entries)."""
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for source in sources:
        if not source.is_file():
            continue
        text = source.read_text(errors="replace")
        for uri in re.findall(r"^(?:URIs:|deb)\s+(\S+)", text, flags=re.M):
            if uri.rstrip("/").endswith("/debian"):
                return uri
    return "http://deb.debian.org/debian"


def debian_base(workdir: Path) -> float:
    """``localhost/debian-base:bookworm`` from debootstrap (skipped when present). Seconds."""
    if image_exists(DEBIAN_IMAGE):
        return 0.0
    started = time.monotonic()
    rootfs = workdir / "rootfs"
    run(["debootstrap", "--variant=minbase", "bookworm", str(rootfs), apt_mirror()])
    for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):  # ~80 MB nobody needs
        for item in (rootfs / cache).glob("*"):
            if item.is_file():
                item.unlink()
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    subprocess.run(["podman", "import", "-", DEBIAN_IMAGE], stdin=tar.stdout, check=True)
    tar.wait()
    shutil.rmtree(rootfs, ignore_errors=True)
    return time.monotonic() - started


def build(
    dockerfile: str, tag: str, context: Path, build_args: dict[str, str], no_cache: bool = False
) -> float:
    """``podman build`` with the Dockerfile's own ignore file; returns seconds."""
    command = ["podman", "build", "--network", "host", "-f", str(REPO / dockerfile)]
    if no_cache:
        command.append("--no-cache")
    ignore = REPO / f"{dockerfile}.dockerignore"
    if ignore.is_file():
        command += ["--ignorefile", str(ignore)]
    for key, value in build_args.items():
        command += ["--build-arg", f"{key}={value}"]
    started = time.monotonic()
    run([*command, "-t", tag, str(context)], timeout=3600)
    return time.monotonic() - started


def stand_in_images(workdir: Path) -> dict[str, float]:
    """The python and redis images on the local Debian base. Seconds per image (0: kept)."""
    context = workdir / "base-context"
    (context / "local-ca").mkdir(parents=True, exist_ok=True)
    for cert in LOCAL_CA.glob("*.crt") if LOCAL_CA.is_dir() else []:
        shutil.copy(cert, context / "local-ca" / cert.name)
    base = {"DEBIAN_IMAGE": DEBIAN_IMAGE}
    return {
        PYTHON_IMAGE: build("docker/Dockerfile.debian-python", PYTHON_IMAGE, context, base),
        REDIS_IMAGE: build("docker/Dockerfile.redis", REDIS_IMAGE, context, base),
    }


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        logger.debug(format, *args)


@contextlib.contextmanager
def torch_index(wheels: Path) -> Iterator[str | None]:
    """A loopback PEP 503 index holding the CPU torch wheel, or None to use PyTorch's own."""
    wheel = wheels / TORCH_WHEEL
    if not wheel.is_file():
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="torch-index-") as root:
        (Path(root) / "torch").mkdir()
        (Path(root) / "torch" / TORCH_WHEEL).symlink_to(wheel)
        handler = functools.partial(_QuietHandler, directory=root)
        try:  # one port, so TORCH_INDEX (part of the layer cache key) is the same every build
            server = http.server.ThreadingHTTPServer(("127.0.0.1", TORCH_INDEX_PORT), handler)
        except OSError:
            server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}/"
        finally:
            server.shutdown()
            server.server_close()


def cpu_image(wheels: Path, no_cache: bool) -> float:
    """Build ``hardneg:cpu`` from docker/Dockerfile.cpu on the local python base. Seconds."""
    args = {"BASE_IMAGE": PYTHON_IMAGE}
    with torch_index(wheels) as index:
        if index is not None:
            args["TORCH_INDEX"] = index
        return build("docker/Dockerfile.cpu", CPU_IMAGE, REPO, args, no_cache)


def healthcheck(container: str) -> bool:
    """Run the container's health check (compose.yaml's ``healthcheck.test``) now."""
    done = subprocess.run(["podman", "healthcheck", "run", container], capture_output=True)
    return done.returncode == 0


class Compose:
    """``podman-compose`` on compose.yaml under its own project name (so its own volumes)."""

    def __init__(self, project: str, environment: dict[str, str]) -> None:
        self.project = project
        self.environment = environment

    def __call__(self, *args: str, timeout: float = 600) -> str:
        command = ["podman-compose", "-f", str(REPO / "compose.yaml"), "-p", self.project, *args]
        logger.info("$ %s", " ".join(command))
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=os.environ | self.environment,
            cwd=REPO,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"podman-compose {args[0]} failed:\n{(done.stdout + done.stderr)[-4000:]}"
            )
        return done.stdout

    def container(self, service: str) -> str:
        """The (single) container of a service."""
        names = run(
            [
                "podman", "ps", "-a", "--format", "{{.Names}}",
                "--filter", f"label=io.podman.compose.project={self.project}",
                "--filter", f"label=com.docker.compose.service={service}",
            ]
        ).split()  # fmt: skip
        if len(names) != 1:
            raise RuntimeError(f"expected one {service} container, found {names}")
        return names[0]

    def volumes(self) -> list[str]:
        listed = run(["podman", "volume", "ls", "--format", "{{.Name}}"]).split()
        return [v for v in listed if v.startswith(f"{self.project}_")]

    def networks(self) -> list[str]:
        listed = run(["podman", "network", "ls", "--format", "{{.Name}}"]).split()
        return [n for n in listed if n.startswith(f"{self.project}_")]

    def down(self) -> dict[str, list[str]]:
        """``down -v``, then whatever podman-compose 1.0 leaves (its network); what is left."""
        self("down", "-v", timeout=300)
        if volumes := self.volumes():
            run(["podman", "volume", "rm", "-f", *volumes])
        if networks := self.networks():
            run(["podman", "network", "rm", "-f", *networks])
        return {"volumes": self.volumes(), "networks": self.networks()}

    def logs(self, service: str, lines: int = 40) -> str:
        name = self.container(service)
        done = subprocess.run(
            ["podman", "logs", "--tail", str(lines), name], capture_output=True, text=True
        )
        return (done.stdout + done.stderr)[-3000:]
