"""The dashboard at ``/``: corpora, jobs with live progress, training curves, score histograms and
experiment tables, as server-rendered pages (see ``dashboard_html``).

A browser cannot send a Bearer header on navigation, so when API keys are configured the pages
take the key from an HttpOnly, SameSite=Strict cookie set by ``POST /login`` (or from the usual
header); without a valid key, pages redirect to the sign-in form and fragments answer 401.
"""

from __future__ import annotations

import hmac
import secrets
from pathlib import Path
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from hardneg.service.api import dashboard_html as views
from hardneg.service.api.deps import ServicesDep
from hardneg.service.api.security import bearer_token, key_matches
from hardneg.service.jobs.paths import job_dir
from hardneg.service.jobs.records import JobRecord
from hardneg.service.jobs.services import Services

router = APIRouter(include_in_schema=False)

COOKIE = "hardneg_key"
CSRF_COOKIE = "hardneg_csrf"
LOGIN_PATH = "/login"
OPEN_PATHS = frozenset({"/", LOGIN_PATH})
OPEN_PREFIXES = ("/ui/",)
MAX_LOGIN_BYTES = 4096
JOBS_SHOWN = 50


def signed_in(request: Request) -> bool:
    """True when no keys are configured, or the cookie or Bearer header holds a valid key."""
    keys: list[bytes] = request.app.state.api_keys
    if not keys:
        return True
    token = request.cookies.get(COOKIE) or bearer_token(
        request.headers.get("authorization", "").encode("latin-1")
    )
    return token is not None and key_matches(token, keys)


def require_sign_in(request: Request) -> None:
    if not signed_in(request):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "sign in at /login")


SignedIn = Annotated[None, Depends(require_sign_in)]


def _job(services: Services, job_id: str) -> JobRecord:
    record = services.jobs.get(job_id)
    if record is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job {job_id!r}")
    return record


def _history(services: Services, record: JobRecord) -> list[dict[str, object]]:
    """The newest training history of a job (a train job's model, an experiment's current run)."""
    folder = job_dir(services.settings.home, record.id)
    candidates = [folder / "model" / "metrics.jsonl"]
    if record.kind == "experiment":
        candidates = sorted(
            (folder / "experiment" / "models").glob("*/*/*/metrics.jsonl"),
            key=lambda p: p.stat().st_mtime,
        )[-1:]
    return views.read_history(candidates[0]) if candidates else []


@router.get("/", response_class=HTMLResponse)
def home(request: Request, services: ServicesDep) -> Response:
    if not signed_in(request):
        return RedirectResponse(LOGIN_PATH, status.HTTP_303_SEE_OTHER)
    corpora, _ = services.corpora.page(0, 100)
    jobs, total = services.jobs.page(limit=JOBS_SHOWN)
    experiments, _ = services.jobs.page(state="succeeded", kind="experiment", limit=5)
    tables = "".join(
        f'<h3><a href="/ui/jobs/{views.e(r.id)}">{views.e(r.stats.get("dataset", r.id))}</a> '
        f"({views.e(r.stats.get('profile', ''))})</h3>" + views.experiment_table(r.stats)
        for r in experiments
    )
    body = (
        f"<h2>Jobs ({total})</h2>"
        f'<div id="jobs" data-live="/ui/jobs">{views.jobs_fragment(jobs)}</div>'
        f"<h2>Corpora</h2>{views.corpora_table(corpora)}"
        f"<h2>Experiments</h2>{tables or '<p>No finished experiment yet.</p>'}"
        '<p><a href="/docs">API docs</a> · <a href="/metrics">metrics</a></p>'
    )
    return HTMLResponse(views.page("hardneg", body))


@router.get("/ui/jobs", response_class=HTMLResponse)
def jobs_fragment(services: ServicesDep, _: SignedIn) -> HTMLResponse:
    jobs, _total = services.jobs.page(limit=JOBS_SHOWN)
    return HTMLResponse(views.jobs_fragment(jobs))


@router.get("/ui/jobs/{job_id}", response_class=HTMLResponse)
def job_page(job_id: str, request: Request, services: ServicesDep) -> Response:
    if not signed_in(request):
        return RedirectResponse(LOGIN_PATH, status.HTTP_303_SEE_OTHER)
    record = _job(services, job_id)
    detail = views.job_detail(record, _history(services, record))
    live = f"/ui/jobs/{views.e(job_id)}/live"
    body = f'<p><a href="/">← all jobs</a></p><div data-live="{live}">{detail}</div>'
    return HTMLResponse(views.page(f"job {job_id}", body))


@router.get("/ui/jobs/{job_id}/live", response_class=HTMLResponse)
def job_live(job_id: str, services: ServicesDep, _: SignedIn) -> HTMLResponse:
    record = _job(services, job_id)
    return HTMLResponse(views.job_detail(record, _history(services, record)))


@router.get("/ui/jobs/{job_id}/images/{name}")
def job_image(job_id: str, name: str, services: ServicesDep, _: SignedIn) -> FileResponse:
    """A PNG artifact of the job (score histograms, metric bars, curves)."""
    record = _job(services, job_id)
    entry = record.artifacts.get(name)
    if not name.endswith(views.IMAGE_SUFFIXES) or not isinstance(entry, dict):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no image {name!r}")
    folder = job_dir(services.settings.home, job_id).resolve()
    path = (folder / str(entry["path"])).resolve()
    if not path.is_relative_to(folder) or not path.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no image {name!r}")
    return FileResponse(Path(path), media_type="image/png")


def _secure(request: Request) -> bool:
    """Cookies are ``Secure`` when the setting says so, else when the request came over HTTPS
    (directly, or per X-Forwarded-Proto from a trusted proxy)."""
    setting: bool | None = request.app.state.services.settings.secure_cookies
    return request.url.scheme == "https" if setting is None else setting


def _form(request: Request, message: str = "", status_code: int = 200) -> HTMLResponse:
    """The sign-in form with a fresh CSRF token, also set as a cookie the POST must match."""
    token = secrets.token_urlsafe(32)
    response = HTMLResponse(views.login_page(token, message), status_code=status_code)
    response.set_cookie(
        CSRF_COOKIE, token, httponly=True, samesite="strict", secure=_secure(request), path="/"
    )
    return response


@router.get(LOGIN_PATH, response_class=HTMLResponse)
def login_form(request: Request) -> HTMLResponse:
    return _form(request)


@router.post(LOGIN_PATH, response_class=HTMLResponse)
async def login(request: Request) -> Response:
    """Check the key (401), then the form's CSRF token against its cookie (403: a sign-in
    forged by another site); set the key as the dashboard's cookie (never echoed back)."""
    body = await request.body()
    form = parse_qs(body[:MAX_LOGIN_BYTES].decode("utf-8", "replace"))
    key, csrf = form.get("key", [""])[0], form.get("csrf", [""])[0]
    keys: list[bytes] = request.app.state.api_keys
    if keys and not (key and key_matches(key, keys)):
        return _form(request, "That key is not valid.", 401)
    expected = request.cookies.get(CSRF_COOKIE, "")
    if not (csrf and expected and hmac.compare_digest(csrf.encode(), expected.encode())):
        return _form(request, "The sign-in form expired; please try again.", 403)
    response = RedirectResponse("/", status.HTTP_303_SEE_OTHER)
    response.delete_cookie(CSRF_COOKIE, path="/")
    if keys:
        response.set_cookie(
            COOKIE, key, httponly=True, samesite="strict", secure=_secure(request), path="/"
        )
    return response
