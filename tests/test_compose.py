"""compose.yaml and docker/: valid against the Compose specification, and everything they name
(Dockerfiles, files they copy, hardneg commands and options, HARDNEG_* settings) exists.

This is the offline check; ``python -m bench.deploy`` builds the CPU image and runs the stack
for real with podman (bench/results/deploy.json).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.testing import CliRunner

from hardneg.service.settings import Settings

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "compose.yaml"
HARDNEG_VAR = re.compile(r"\bHARDNEG_[A-Z0-9_]+\b")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


# the project's images (built from the repository) and the registry stand-ins (built from a
# local Debian root filesystem where no registry is reachable; their context is not the repo)
PROJECT_IMAGES = {"Dockerfile.cpu", "Dockerfile.cuda"}
STAND_INS = {"Dockerfile.debian-python", "Dockerfile.redis"}


def dockerfiles() -> list[Path]:
    found = [p for p in (REPO / "docker").glob("Dockerfile.*") if p.suffix != ".dockerignore"]
    assert {p.name for p in found} == PROJECT_IMAGES | STAND_INS
    return found


def check_jsonschema(path: Path) -> subprocess.CompletedProcess[str]:
    executable = shutil.which("check-jsonschema") or str(
        Path(sys.executable).with_name("check-jsonschema")
    )
    return subprocess.run(
        [executable, "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_compose_file_follows_the_compose_specification() -> None:
    result = check_jsonschema(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_catches_a_misspelt_key(tmp_path: Path) -> None:
    broken = tmp_path / "compose.yaml"
    broken.write_text(COMPOSE.read_text().replace("healthcheck:", "healthchek:", 1))
    result = check_jsonschema(broken)
    assert result.returncode != 0 and "healthchek" in result.stdout


def hardneg_app() -> typer.Typer:
    from hardneg.service.cli import app

    return app


def commands(compose: dict[str, Any]) -> list[list[str]]:
    found = [
        s["command"] for s in compose["services"].values() if isinstance(s.get("command"), list)
    ]
    for dockerfile in dockerfiles():
        for match in re.findall(r"^CMD (\[.*\])$", dockerfile.read_text(), flags=re.M):
            found.append(yaml.safe_load(match))
    return [c for c in found if c and c[0] == "hardneg"]


def test_every_hardneg_command_and_option_exists(compose: dict[str, Any]) -> None:
    named = commands(compose)
    assert {c[1] for c in named} == {"serve", "worker"}
    runner = CliRunner()
    for command in named:
        result = runner.invoke(hardneg_app(), [*command[1:], "--help"])
        assert result.exit_code == 0, (command, result.output)
    misspelt = runner.invoke(hardneg_app(), ["serve", "--hots", "0.0.0.0", "--help"])
    assert misspelt.exit_code != 0  # the check above can fail


def test_every_hardneg_variable_is_a_setting() -> None:
    names = set(HARDNEG_VAR.findall(COMPOSE.read_text()))
    for dockerfile in dockerfiles():
        names |= set(HARDNEG_VAR.findall(dockerfile.read_text()))
    assert {"HARDNEG_HOME", "HARDNEG_REDIS_URL", "HARDNEG_API_KEYS"} <= names
    fields = set(Settings.model_fields)
    unknown = sorted(n for n in names if n.removeprefix("HARDNEG_").lower() not in fields)
    assert not unknown, f"not Settings fields: {unknown}"


def test_every_dockerfile_and_what_it_copies_exists(compose: dict[str, Any]) -> None:
    built = [s for s in compose["services"].values() if "build" in s]
    assert {s["build"]["dockerfile"] for s in built} == {f"docker/{n}" for n in PROJECT_IMAGES}
    pyproject = (REPO / "pyproject.toml").read_text()
    for dockerfile in dockerfiles():
        text = dockerfile.read_text()
        copied = [
            s
            for sources in re.findall(r"^COPY (.+) \S+$", text, flags=re.M)
            for s in sources.split()
        ]
        if dockerfile.name in STAND_INS:  # only the site's CA certificates, from their own context
            assert set(copied) <= {"local-ca/"}, (dockerfile.name, copied)
        for source in copied if dockerfile.name in PROJECT_IMAGES else []:
            assert (REPO / source).exists(), (dockerfile.name, source)
        for extras in re.findall(r'pip install "\.\[([a-z,]+)\]"', text):
            for extra in extras.split(","):
                assert re.search(rf"^{extra} = \[", pyproject, flags=re.M), (dockerfile.name, extra)
        assert (REPO / "docker" / f"{dockerfile.name}.dockerignore").is_file()


def test_every_dockerfile_takes_its_base_image_as_a_build_argument() -> None:
    """No registry here: the base comes from a build ARG whose default is the registry image."""
    defaults = {
        "Dockerfile.cpu": "python:3.11-slim-bookworm",
        "Dockerfile.cuda": "python:3.11-slim-bookworm",
        "Dockerfile.debian-python": "debian:bookworm-slim",
        "Dockerfile.redis": "debian:bookworm-slim",
    }
    for dockerfile in dockerfiles():
        text = dockerfile.read_text()
        base = re.search(r"^FROM \$\{(\w+)\}$", text, flags=re.M)
        assert base is not None, dockerfile.name
        default = re.search(rf"^ARG {base.group(1)}=(\S+)$", text, flags=re.M)
        assert default is not None and default.group(1) == defaults[dockerfile.name]
        assert text.index(f"ARG {base.group(1)}=") < text.index("FROM ")


def test_project_images_install_dependencies_before_the_sources() -> None:
    """A layer with every dependency comes before ``COPY src``: a code edit rebuilds seconds."""
    for name in PROJECT_IMAGES:
        text = (REPO / "docker" / name).read_text()
        assert (
            text.index('pip install ".[') < text.index("COPY src ./src") < text.index("--no-deps")
        )


def test_cpu_and_cuda_images_install_the_right_torch_and_faiss() -> None:
    cpu = (REPO / "docker" / "Dockerfile.cpu").read_text()
    cuda = (REPO / "docker" / "Dockerfile.cuda").read_text()
    assert "ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu" in cpu
    assert (
        'pip install --extra-index-url "${TORCH_INDEX}" "torch==2.13.0+cpu"' in cpu
    )  # +cpu: no CUDA
    assert 'pip install ".[cpu]"' in cpu and "assert not torch.version.cuda" in cpu
    assert re.search(r"download\.pytorch\.org/whl/cu12\d", cuda)
    assert 'pip install ".[gpu]"' in cuda and "assert torch.version.cuda" in cuda
    pyproject = (REPO / "pyproject.toml").read_text()
    assert re.search(r'^gpu = \["faiss-gpu-cu12', pyproject, flags=re.M)


def test_services_are_wired_for_a_gpu_box(compose: dict[str, Any]) -> None:
    services = compose["services"]
    redis = services["redis"]
    assert "--appendonly" in redis["command"] and "yes" in redis["command"]
    assert "noeviction" in redis["command"] and "redis-data:/data" in redis["volumes"]
    assert "allkeys-lru" in services["cache"]["command"]
    for name in ("redis", "cache", "api"):
        assert services[name]["healthcheck"]["test"], name
    api, work = services["api"], services["worker"]
    for service in (api, work):
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
        env = service["environment"]
        home = env["HARDNEG_HOME"]
        assert f"hardneg-data:{home}" in service["volumes"]  # one data directory, shared
        assert env["HARDNEG_API_KEYS"].startswith("${HARDNEG_API_KEYS:?")  # a key is required
        assert env["HARDNEG_REDIS_URL"].startswith("redis://redis:")
        assert env["HARDNEG_CACHE_REDIS_URL"].startswith("redis://cache:")
        literal = {
            k.removeprefix("HARDNEG_").lower(): v
            for k, v in env.items()
            if k.startswith("HARDNEG_") and "${" not in str(v)
        }
        Settings(**literal)  # the literal values parse
    devices = work["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert work["image"] == "hardneg:cuda" and work["build"]["dockerfile"].endswith(".cuda")
    assert "hardneg-data" in compose["volumes"]


def test_cpu_boxes_get_a_cpu_worker_and_the_api_runs_the_cpu_image(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    api, gpu, cpu = services["api"], services["worker"], services["worker-cpu"]
    assert api["image"] == cpu["image"] == "hardneg:cpu"  # the API never loads a model
    assert api["build"]["dockerfile"] == cpu["build"]["dockerfile"] == "docker/Dockerfile.cpu"
    assert cpu["profiles"] == ["cpu"] and "profiles" not in gpu  # `up` on a GPU box: GPU worker
    assert "deploy" not in cpu and cpu["command"] == gpu["command"] == ["hardneg", "worker"]
    assert cpu["environment"] == gpu["environment"] and cpu["volumes"] == gpu["volumes"]
    for name in ("redis", "cache"):  # a local stand-in where no registry is reachable
        assert services[name]["image"] == "${REDIS_IMAGE:-redis:7.4-alpine}"
    from bench.deploy import SERVICES

    assert set(SERVICES) <= set(services) and "worker" not in SERVICES


def test_health_checks_survive_podman_compose_quoting(compose: dict[str, Any]) -> None:
    """podman-compose 1.0 joins a CMD list into one shell string without quoting it properly:
    an argument holding a space or a quote breaks the probe (it then always fails)."""
    for name, service in compose["services"].items():
        test = service.get("healthcheck", {}).get("test")
        if not test:
            continue
        if test[0] == "CMD":
            assert all(re.fullmatch(r"[\w./:=-]+", arg) for arg in test[1:]), (name, test)
        else:
            assert test[0] == "CMD-SHELL" and len(test) == 2, (name, test)


def test_llm_profile_serves_the_miners_openai_backend(compose: dict[str, Any]) -> None:
    vllm = compose["services"]["vllm"]
    assert vllm["profiles"] == ["llm"] and vllm["image"].split(":")[-1] != "latest"
    env = compose["services"]["worker"]["environment"]
    assert env["HARDNEG_LLM_BACKEND"] == "openai"
    port = vllm["command"][vllm["command"].index("--port") + 1]
    assert env["HARDNEG_LLM_BASE_URL"] == f"http://vllm:{port}/v1"
    key_variable = env["HARDNEG_LLM_API_KEY_ENV"]
    assert env[key_variable] == vllm["command"][vllm["command"].index("--api-key") + 1]
    assert env["HARDNEG_LLM_MODEL"] == vllm["command"][vllm["command"].index("--model") + 1]


def test_the_images_pip_install_ships_every_module() -> None:
    """The Dockerfiles run ``pip install .``: a folder without __init__.py would be left out."""
    from setuptools import find_packages

    packaged = set(find_packages(str(REPO / "src")))
    folders = {
        ".".join(path.relative_to(REPO / "src").parts)
        for path in (REPO / "src" / "hardneg").rglob("*")
        if path.is_dir() and path.name != "__pycache__" and any(path.glob("*.py"))
    }
    assert folders - packaged == set()
