"""Auth: every route but the named open ones refuses a missing or wrong key, a refused request
changes nothing, and keys never appear in error bodies or in the server's log.

The routes come from the application itself (:func:`protected_routes`), so a route added later
is covered without touching this file. A refusal is a 401, or for a dashboard page a browser
navigates to, a redirect to the sign-in form. ``bench/reliability.py`` records the same checks.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI

from hardneg.service.api.app import create_app
from hardneg.service.api.routes.dashboard import LOGIN_PATH
from hardneg.service.api.routing import api_routes
from hardneg.service.settings import Settings
from tests.conftest import TINY_DOCS
from tests.test_service_support import (
    API_KEY,
    AUTH,
    REDIS_URL,
    Processes,
    jsonl,
    purge,
    service_env,
    unique_prefix,
    wait_for,
)

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/openapi.json", "/docs", "/docs/oauth2-redirect"})
OPEN_ROUTES = frozenset({("GET", LOGIN_PATH)})  # the dashboard's sign-in form
WRONG_KEY = "wrong-" + API_KEY[::-1]
REFUSED_HEADERS: dict[str, dict[str, str]] = {
    "missing": {},
    "wrong_key": {"Authorization": f"Bearer {WRONG_KEY}"},
    "bare_scheme": {"Authorization": "Bearer"},
    "other_scheme": {"Authorization": f"Basic {API_KEY}"},
    "key_prefix": {"Authorization": f"Bearer {API_KEY[:-1]}"},
    "key_suffix": {"Authorization": f"Bearer {API_KEY}x"},
}


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # the template, e.g. /v1/jobs/{job_id}
    documented: bool  # in the OpenAPI schema (the dashboard's HTML pages are not)

    @property
    def url(self) -> str:
        return re.sub(r"\{[^}]+\}", "x0", self.path)


def protected_routes(app: FastAPI) -> list[Endpoint]:
    """Every (method, path) the app serves except the open health probes, docs and sign-in."""
    found = {
        Endpoint(method, route.path, bool(getattr(route, "include_in_schema", True)))
        for route in api_routes(app.routes)
        if route.path not in OPEN_PATHS
        for method in (route.methods or ())
        if method != "HEAD" and (method, route.path) not in OPEN_ROUTES
    }
    return sorted(found, key=lambda e: (e.path, e.method))


@dataclass
class AuthReport:
    checked: int = 0
    refused: int = 0
    leaks: int = 0
    unexpected: list[str] | None = None

    def summary(self) -> dict[str, object]:
        return {
            "requests": self.checked,
            "refused": self.refused,
            "key_in_body": self.leaks,
            "unexpected": (self.unexpected or [])[:20],
        }


def check_refusals(client: httpx.Client, endpoints: list[Endpoint]) -> AuthReport:
    """Send each endpoint every kind of bad credentials; all must be 401 without the keys."""
    report = AuthReport(unexpected=[])
    for endpoint in endpoints:
        for label, headers in REFUSED_HEADERS.items():
            body = jsonl(TINY_DOCS) if endpoint.method in MUTATING else None
            response = client.request(endpoint.method, endpoint.url, headers=headers, content=body)
            report.checked += 1
            if refused(endpoint, response):
                report.refused += 1
            else:
                report.unexpected.append(f"{label} {endpoint.method} {endpoint.path}: {response}")
            if API_KEY in response.text or WRONG_KEY in response.text:
                report.leaks += 1
    return report


def refused(endpoint: Endpoint, response: httpx.Response) -> bool:
    if response.status_code == 401:  # the API says how to authenticate; the dashboard need not
        return not endpoint.documented or response.headers.get("www-authenticate") == "Bearer"
    # a page a browser navigates to sends it to the sign-in form instead
    redirect = response.status_code == 303 and response.headers.get("location") == LOGIN_PATH
    return redirect and not endpoint.documented and endpoint.method == "GET"


def stored(client: httpx.Client) -> tuple[int, int]:
    return client.get("/v1/corpora").json()["total"], client.get("/v1/jobs").json()["total"]


@dataclass(frozen=True)
class Server:
    client: httpx.Client  # without a key
    processes: Processes
    app: FastAPI  # the same application in-process, for its route list


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("auth")
    prefix = unique_prefix()
    env = service_env(prefix, root / "home", HARDNEG_BEIR_BASE_URL="http://127.0.0.1:9")
    processes = Processes(env, root / "logs")
    settings = Settings(home=root / "home", redis_url=REDIS_URL, redis_prefix=prefix)
    try:
        # debug: the most the server ever logs, access lines with their query strings included
        processes._spawn("serve", "--port", str(processes.port), "--log-level", "debug")
        with httpx.Client(base_url=processes.base_url, timeout=30) as client:
            wait_for(lambda: _answers(client), 60, "the API to answer")
            yield Server(client, processes, create_app(settings))
    finally:
        processes.stop_all()
        purge(prefix)


def _answers(client: httpx.Client) -> bool:
    try:
        return client.get("/healthz").status_code == 200
    except httpx.HTTPError:
        return False


def test_the_route_list_comes_from_the_app_and_names_every_mutation(server: Server) -> None:
    endpoints = protected_routes(server.app)
    mutations = {(e.method, e.path) for e in endpoints if e.method in MUTATING}
    assert ("POST", "/v1/corpora") in mutations and ("DELETE", "/v1/jobs/{job_id}") in mutations
    assert {("POST", "/v1/jobs/mine"), ("POST", "/v1/jobs/train")} <= mutations
    schema = server.client.get("/openapi.json").json()
    documented = {
        (method.upper(), path)
        for path, item in schema["paths"].items()
        for method in item
        if path not in OPEN_PATHS
    }
    assert documented == {(e.method, e.path) for e in endpoints if e.documented}
    for method, path in documented:  # and OpenAPI tells clients each one needs the key
        operation = schema["paths"][path][method.lower()]
        assert operation.get("security") == [{"HTTPBearer": []}], (method, path)
        assert "401" in operation["responses"], (method, path)


def test_every_protected_route_refuses_bad_keys_and_changes_nothing(server: Server) -> None:
    with httpx.Client(base_url=server.client.base_url, headers=AUTH, timeout=30) as keyed:
        created = keyed.post("/v1/corpora?name=auth", content=jsonl(TINY_DOCS))
        assert created.status_code == 201, created.text
        before = stored(keyed)
        report = check_refusals(server.client, protected_routes(server.app))
        # real ids too: refusal must not depend on the resource existing
        corpus_id = created.json()["id"]
        for method, url in (
            ("DELETE", f"/v1/corpora/{corpus_id}"),
            ("GET", f"/v1/corpora/{corpus_id}"),
        ):
            response = server.client.request(method, url, headers=REFUSED_HEADERS["wrong_key"])
            assert response.status_code == 401
        assert stored(keyed) == before
        assert keyed.get(f"/v1/corpora/{corpus_id}").status_code == 200
        assert keyed.get("/v1/corpora", headers={"Authorization": f"bearer {API_KEY}"}).is_success
    assert report.unexpected == [] and report.leaks == 0, report.summary()
    assert report.refused == report.checked > 0
    for path in ("/healthz", "/openapi.json"):
        assert server.client.get(path).status_code == 200


def test_keys_never_reach_the_log(server: Server) -> None:
    with httpx.Client(base_url=server.client.base_url, headers=AUTH, timeout=30) as keyed:
        keyed.get("/v1/corpora")
        keyed.post("/v1/jobs/evaluate", json={"params": {}})  # an error path, with the key
        keyed.get("/metrics")
    check_refusals(server.client, protected_routes(server.app)[:3])
    log = log_text(server.processes)
    assert "GET /v1/corpora" in log  # the log does record requests
    assert API_KEY not in log and WRONG_KEY not in log


def log_text(processes: Processes) -> str:
    return "\n".join(p.read_text(errors="replace") for p in sorted(processes.logs.glob("*.log")))
