"""``/v1/jobs``: submit one kind of job, watch it, cancel it, page its results, download files.

``POST /v1/jobs/<kind>`` exists for every public kind in ``hardneg.service.jobs.registry.KINDS``
with that kind's params model as the body schema, so OpenAPI documents each one.
"""

from __future__ import annotations

import inspect
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status
from fastapi.responses import FileResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from hardneg.service.api.deps import IdempotencyKey, JobReaderDep, PrincipalDep, ServicesDep
from hardneg.service.api.errors import Responses, api_error, responses
from hardneg.service.api.schemas import MAX_OFFSET, JobSubmit, JobView, Page, ResultsPage
from hardneg.service.jobs.artifacts import MEDIA_TYPES, discard, read_page
from hardneg.service.jobs.cancel import add_submitter, cancel, withdraw
from hardneg.service.jobs.corpus_lock import CorpusBusyError
from hardneg.service.jobs.paths import PathRefusedError, job_dir
from hardneg.service.jobs.records import JobRecord, JobState
from hardneg.service.jobs.recovery import recover
from hardneg.service.jobs.registry import KINDS, JobKind
from hardneg.service.jobs.services import Services
from hardneg.service.jobs.submit import (
    CorpusGoneError,
    Idempotency,
    IdempotencyConflictError,
    IdempotencyInProgressError,
    request_digest,
    submit,
)

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=responses(401, 503))

DEDUPLICATED: Responses = {
    200: {"model": JobView, "description": "an identical job already exists"}
}
BINARY = {"type": "string", "format": "binary"}
ARTIFACT_FILE: Responses = {
    200: {
        "description": "the file (a model folder as .tar.gz)",
        "content": {
            # a JSON artifact is any JSON document (stats, metrics); the rest are files
            media: {"schema": {} if media == "application/json" else BINARY}
            for media in sorted({*MEDIA_TYPES.values(), "application/octet-stream"})
        },
    }
}


def _get(services: Services, job_id: str) -> JobRecord:
    record = services.jobs.get(job_id)
    if record is None:
        raise api_error(404, f"no job {job_id!r}", "job_id")
    if record.state == "running" and services.jobs.lease_owner(job_id) != record.attempt:
        lease = services.settings.job_lease_seconds
        record = recover(services, job_id, f"no heartbeat for {lease:g}s") or record
    return record


def _check_params(kind: JobKind, params: BaseModel, services: Services) -> None:
    """Checks that need the server's settings (:meth:`JobKind.check`)."""
    try:
        kind.check(params, services.settings)
    except ValueError as exc:
        field = getattr(exc, "field", None)
        raise api_error(422, str(exc), f"params.{field}" if field else "params") from None


def _submit(
    kind: JobKind,
    body: JobSubmit[Any],
    services: Services,
    principal_id: str,
    idempotency_key: str | None,
    response: Response,
) -> JobView:
    corpus = None
    if kind.needs_corpus:
        if body.corpus_id is None:
            raise api_error(422, f"{kind.name} jobs need a corpus_id", "corpus_id")
        corpus = services.corpora.get(body.corpus_id)
        if corpus is None:
            raise api_error(404, f"no corpus {body.corpus_id!r}", "corpus_id")
        if corpus.state != "ready":
            raise api_error(409, f"corpus {corpus.id} is {corpus.state}", "corpus_id")
    _check_params(kind, body.params, services)
    idem = (
        Idempotency(services, kind.name, principal_id, idempotency_key) if idempotency_key else None
    )
    digest = request_digest(kind.name, body.model_dump(mode="json"))
    try:
        seen = idem.reserve(digest) if idem else None
    except IdempotencyConflictError as exc:
        raise api_error(422, str(exc), "Idempotency-Key") from None
    except IdempotencyInProgressError as exc:
        raise api_error(409, str(exc), "Idempotency-Key") from None
    if seen is not None:
        return JobView.of(_get(services, seen))
    try:
        submission = submit(services, kind, body.params, corpus, body.force)
    except BaseException as exc:
        if idem is not None:
            idem.release()
        if isinstance(exc, CorpusGoneError):
            raise api_error(404, str(exc), "corpus_id") from None
        if isinstance(exc, CorpusBusyError):
            raise api_error(409, str(exc), "corpus_id") from None
        raise
    add_submitter(services, submission.record.id, principal_id)
    if idem is not None:
        idem.complete(digest, submission.record.id)
    if not submission.created:
        response.status_code = status.HTTP_200_OK
    return JobView.of(submission.record, deduplicated=not submission.created)


def _submit_route(kind: JobKind) -> None:
    """Add ``POST /v1/jobs/<kind>`` whose body schema is ``JobSubmit[<kind's params>]``."""
    body_model = JobSubmit[kind.params]  # type: ignore[name-defined]

    def endpoint(
        body: Any, services: Any, principal: Any, response: Response, idempotency_key: Any = None
    ) -> JobView:
        return _submit(kind, body, services, principal.id, idempotency_key, response)

    # FastAPI reads the signature; build it with this kind's body model.
    endpoint.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter("body", inspect.Parameter.KEYWORD_ONLY, annotation=body_model),
            inspect.Parameter("services", inspect.Parameter.KEYWORD_ONLY, annotation=ServicesDep),
            inspect.Parameter("principal", inspect.Parameter.KEYWORD_ONLY, annotation=PrincipalDep),
            inspect.Parameter("response", inspect.Parameter.KEYWORD_ONLY, annotation=Response),
            inspect.Parameter(
                "idempotency_key",
                inspect.Parameter.KEYWORD_ONLY,
                annotation=IdempotencyKey,
                default=None,
            ),
        ],
        return_annotation=JobView,
    )
    router.add_api_route(
        f"/{kind.name}",
        endpoint,
        methods=["POST"],
        response_model=JobView,
        status_code=status.HTTP_202_ACCEPTED,
        responses=DEDUPLICATED | responses(400, 404, 409, 422),
        summary=f"Submit a {kind.name} job",
        description=kind.description
        + " Identical requests share one job (200 with deduplicated=true) unless force is set.",
        name=f"submit_{kind.name}",
    )


for _kind in KINDS.values():
    if _kind.public:
        _submit_route(_kind)


@router.get("", response_model=Page[JobView], responses=responses(422))
def list_jobs(
    services: ServicesDep,
    _: PrincipalDep,
    state: JobState | None = None,
    kind: str | None = None,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Page[JobView]:
    records, total = services.jobs.page(state, kind, offset, limit)
    items = [JobView.of(r) for r in records]
    return Page[JobView](items=items, total=total, offset=offset, limit=limit)


@router.get("/{job_id}", response_model=JobView, responses=responses(404))
async def get_job(
    job_id: str, services: ServicesDep, reader: JobReaderDep, _: PrincipalDep
) -> Response:
    """Status, stage and progress, stats, attempts, error and artifacts of one job."""
    record, lease = await reader.get(job_id)  # polled hard: see hardneg.service.api.job_reads
    if record is None:
        raise api_error(404, f"no job {job_id!r}", "job_id")
    if record.state == "running" and lease != record.attempt:  # rare: settle a lost run
        record = await run_in_threadpool(_get, services, job_id)
    return Response(JobView.of(record).model_dump_json(), media_type="application/json")


@router.post(
    "/{job_id}/cancel",
    response_model=JobView,
    status_code=status.HTTP_202_ACCEPTED,
    responses=responses(404, 409, 422),
)
def cancel_job(
    job_id: str,
    services: ServicesDep,
    principal: PrincipalDep,
    force: Annotated[bool, Query(description="kill the work horse now, no grace")] = False,
) -> JobView:
    """Cancel: a queued job never starts; a running one stops at its next progress report, and
    is killed if it has not stopped after the grace period (at once with ``force``). A job that
    other API keys also submitted (deduplicated onto it) goes on until every one of them has
    cancelled it: this caller's interest is withdrawn and the job is returned unchanged."""
    record = _get(services, job_id)
    if record.terminal:
        raise api_error(409, f"job is already {record.state}", "job_id")
    if withdraw(services, job_id, principal.id) > 0:
        return JobView.of(record)
    marked = cancel(services, job_id, kill=force)
    return JobView.of(marked or _get(services, job_id))


def _artifact_path(services: Services, record: JobRecord, name: str) -> Any:
    entry = record.artifacts.get(name)
    if not isinstance(entry, dict):
        raise api_error(404, f"job {record.id} has no artifact {name!r}", "name")
    try:
        folder = job_dir(services.settings.home, record.id)
    except PathRefusedError:
        raise api_error(404, f"no job {record.id!r}", "job_id") from None
    path = (folder / str(entry["path"])).resolve()
    if not path.is_relative_to(folder.resolve()) or not path.is_file():
        raise api_error(410, f"artifact {name!r} is no longer on disk", "name")
    return path, str(entry["media_type"])


@router.get(
    "/{job_id}/results", response_model=ResultsPage, responses=responses(404, 409, 410, 422)
)
async def job_results(
    job_id: str,
    services: ServicesDep,
    _: PrincipalDep,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> ResultsPage:
    """One page of the job's results (rows of its JSONL result file)."""
    record = _get(services, job_id)
    if record.state != "succeeded":
        raise api_error(409, f"job is {record.state}; results exist once it succeeded", "job_id")
    if record.results is None:
        raise api_error(404, f"{record.kind} jobs have no paged results", "job_id")
    path, _media = _artifact_path(services, record, record.results)
    items, total = await run_in_threadpool(read_page, path, offset, limit)
    return ResultsPage(items=items, total=total, offset=offset, limit=limit)


@router.get(
    "/{job_id}/artifacts/{name}",
    response_class=FileResponse,
    responses=ARTIFACT_FILE | responses(404, 410),
)
def download_artifact(job_id: str, name: str, services: ServicesDep, _: PrincipalDep) -> Any:
    """Download one artifact (JSONL, Parquet, JSON, a model folder as .tar.gz)."""
    record = _get(services, job_id)
    path, media = _artifact_path(services, record, name)
    return FileResponse(path, media_type=media, filename=name)


@router.delete("/{job_id}", status_code=status.HTTP_204_NO_CONTENT, responses=responses(404, 409))
def delete_job(job_id: str, services: ServicesDep, _: PrincipalDep) -> Response:
    """Forget a finished job and delete its artifacts (cancel a running one first)."""
    record = _get(services, job_id)
    if not record.terminal:
        raise api_error(409, f"job is {record.state}; cancel it first", "job_id")
    services.jobs.delete(record)
    discard(job_dir(services.settings.home, record.id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)
