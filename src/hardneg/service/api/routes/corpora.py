"""``/v1/corpora``: upload, register (BEIR name or server path), list, detail, delete."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import replace
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from starlette.concurrency import run_in_threadpool

from hardneg.core.beir import DataError
from hardneg.core.download import BEIR_MD5, validate_dataset_name
from hardneg.service.api import corpus_files, uploads
from hardneg.service.api.deps import IdempotencyKey, PrincipalDep, ServicesDep
from hardneg.service.api.errors import Responses, api_error, responses
from hardneg.service.api.schemas import MAX_OFFSET, CorpusView, Page, RegisterBeir, RegisterPath
from hardneg.service.api.security import Principal
from hardneg.service.jobs.cancel import cancel
from hardneg.service.jobs.corpora import NAME_PATTERN, CorpusRecord, CorpusSource, new_corpus_id
from hardneg.service.jobs.corpus_lock import CorpusBusyError, corpus_lock
from hardneg.service.jobs.kinds.corpus import RegisterCorpusSpec
from hardneg.service.jobs.paths import (
    PathRefusedError,
    UnusablePathError,
    confine,
    confine_tree,
)
from hardneg.service.jobs.records import JobRecord
from hardneg.service.jobs.registry import KINDS
from hardneg.service.jobs.services import Services
from hardneg.service.jobs.submit import (
    Idempotency,
    IdempotencyConflictError,
    IdempotencyInProgressError,
    request_digest,
    submit,
)

router = APIRouter(prefix="/v1/corpora", tags=["corpora"], responses=responses(401, 503))
F = TypeVar("F", bound=Callable[..., Any])


def _raw_body(*media_types: str) -> dict[str, Any]:
    """OpenAPI for a route that streams its raw request body itself."""
    schema = {"type": "string", "format": "binary"}
    content = {media: {"schema": schema} for media in media_types}
    return {"requestBody": {"required": True, "content": content}}


JSONL_BODY = _raw_body("application/x-ndjson", "application/gzip", "application/octet-stream")
TSV_BODY = _raw_body("text/tab-separated-values", "application/gzip", "application/octet-stream")
ALREADY_REGISTERED: Responses = {
    200: {"model": CorpusView, "description": "already registered or ready"}
}


def _view(services: Services, record: CorpusRecord) -> CorpusView:
    job = services.jobs.get(record.job_id) if record.job_id else None
    return CorpusView.of(record, job)


def _get(services: Services, corpus_id: str) -> CorpusRecord:
    record = services.corpora.get(corpus_id)
    if record is None:
        raise api_error(404, f"no corpus {corpus_id!r}", "corpus_id")
    return record


def _idempotency(
    services: Services, principal: Principal, scope: str, key: str | None
) -> Idempotency | None:
    return Idempotency(services, scope, principal.id, key) if key else None


def _replayed(idem: Idempotency | None, digest: str) -> str | None:
    if idem is None:
        return None
    try:
        return idem.reserve(digest)
    except IdempotencyConflictError as exc:
        raise api_error(422, str(exc), "Idempotency-Key") from None
    except IdempotencyInProgressError as exc:
        raise api_error(409, str(exc), "Idempotency-Key") from None


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=CorpusView,
    responses=responses(409, 413, 422),
    openapi_extra=JSONL_BODY,
)
async def upload_corpus(
    request: Request,
    services: ServicesDep,
    principal: PrincipalDep,
    name: Annotated[str, Query(pattern=NAME_PATTERN, description="a label for the corpus")],
    idempotency_key: IdempotencyKey = None,
) -> CorpusView:
    """Upload ``corpus.jsonl`` or ``corpus.jsonl.gz`` as the raw request body (streamed)."""
    settings = services.settings
    received = await _receive(request, services, "corpus.jsonl", decompress=False)
    idem = _idempotency(services, principal, "corpora", idempotency_key)
    try:
        digest = request_digest(name, received.digest)
        if (seen := _replayed(idem, digest)) is not None:
            return _view(services, _get(services, seen))
        try:
            record = await run_in_threadpool(
                corpus_files.store_uploaded_corpus, received, settings.home, name, services.corpora
            )
        except DataError as exc:
            raise api_error(422, exc.reason, "body", exc.line) from None
        if idem is not None:
            idem.complete(digest, record.id)
        return _view(services, record)
    except BaseException:
        if idem is not None:
            idem.release()
        raise
    finally:
        uploads.discard(received)


def _register(
    services: Services, source: CorpusSource, ref: str, name: str, spec: RegisterCorpusSpec
) -> tuple[CorpusRecord, bool]:
    """Find or create the corpus for ``source:ref``; (re)submit its registration job unless it
    is ready or being registered. Returns (record, whether a job was submitted)."""
    candidate = CorpusRecord(
        id=new_corpus_id(),
        name=name,
        source=source,
        folder=ref,
        source_ref=ref,
    )
    record, _ = services.corpora.create_for_source(f"{source}:{ref}", candidate)
    job = services.jobs.get(record.job_id) if record.job_id else None
    if record.state == "ready" or (job is not None and not job.terminal):
        return record, False
    kind = KINDS["corpus"]
    submission = submit(services, kind, spec, record)
    job_id = submission.record.id
    updated = services.corpora.update(record.id, lambda old: replace(old, job_id=job_id))
    return updated or record, True


def _check_dataset(services: Services, name: str, md5: str | None) -> None:
    """A BEIR name is downloaded only with its published checksum (a caller's md5 cannot
    replace it); a name without one only when it is already on disk, or the server allows it."""
    published = BEIR_MD5.get(name)
    if published is not None:
        if md5 is not None and md5 != published:
            raise api_error(422, f"md5 differs from BEIR's published {published}", "md5")
        return
    settings = services.settings
    roots = (services.workspace.datasets, *settings.data_dirs)
    if settings.allow_unlisted_datasets or any((r.expanduser() / name).is_dir() for r in roots):
        return
    message = (
        f"{name!r} is not a BEIR dataset with a published checksum (known: "
        f"{', '.join(sorted(BEIR_MD5))}); register a folder by path instead"
    )
    raise api_error(422, message, "name")


@router.post(
    "/beir",
    response_model=CorpusView,
    status_code=status.HTTP_202_ACCEPTED,
    responses=ALREADY_REGISTERED | responses(400, 422),
)
def register_beir(
    body: RegisterBeir, services: ServicesDep, response: Response, _: PrincipalDep
) -> CorpusView:
    """Register a public BEIR dataset by name; a job downloads (if needed) and checks it."""
    try:
        name = validate_dataset_name(body.name)
    except ValueError as exc:
        raise api_error(422, str(exc), "name") from None
    _check_dataset(services, name, body.md5)
    spec = RegisterCorpusSpec(source="beir", name=name, md5=body.md5)
    record, created = _register(services, "beir", name, name, spec)
    if not created:
        response.status_code = status.HTTP_200_OK
    return _view(services, record)


@router.post(
    "/path",
    response_model=CorpusView,
    status_code=status.HTTP_202_ACCEPTED,
    responses=ALREADY_REGISTERED | responses(400, 403, 422),
)
def register_path(
    body: RegisterPath, services: ServicesDep, response: Response, _: PrincipalDep
) -> CorpusView:
    """Register a BEIR folder on the server; it must lie under an allowed root."""
    try:
        folder = confine(body.path, services.settings.allowed_roots)
    except UnusablePathError as exc:
        raise api_error(422, str(exc), "path") from None
    except PathRefusedError as exc:
        raise api_error(403, str(exc), "path") from None
    if not folder.is_dir():
        raise api_error(422, "no folder at that path", "path")
    try:
        confine_tree(folder, services.settings.allowed_roots)
    except PathRefusedError as exc:
        raise api_error(403, str(exc), "path") from None
    spec = RegisterCorpusSpec(source="path", path=str(folder))
    record, created = _register(services, "path", str(folder), body.name or folder.name, spec)
    if not created:
        response.status_code = status.HTTP_200_OK
    return _view(services, record)


@router.get("", response_model=Page[CorpusView], responses=responses(422))
def list_corpora(
    services: ServicesDep,
    _: PrincipalDep,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Page[CorpusView]:
    records, total = services.corpora.page(offset, limit)
    items = [_view(services, r) for r in records]
    return Page[CorpusView](items=items, total=total, offset=offset, limit=limit)


@router.get("/{corpus_id}", response_model=CorpusView, responses=responses(404))
def get_corpus(corpus_id: str, services: ServicesDep, _: PrincipalDep) -> CorpusView:
    return _view(services, _get(services, corpus_id))


def _active_jobs(services: Services, corpus_id: str) -> list[JobRecord]:
    ids = services.jobs.ids_in_state("queued") + services.jobs.ids_in_state("running")
    records = (services.jobs.get(job_id) for job_id in ids)
    return [r for r in records if r is not None and r.corpus_id == corpus_id]


@router.delete(
    "/{corpus_id}", status_code=status.HTTP_204_NO_CONTENT, responses=responses(404, 409)
)
def delete_corpus(
    corpus_id: str,
    services: ServicesDep,
    _: PrincipalDep,
    force: Annotated[
        bool, Query(description="cancel the corpus's queued and running jobs, then delete")
    ] = False,
) -> Response:
    """Forget a corpus; uploaded and generated corpora's files are deleted, registered folders
    are kept. A corpus with queued or running jobs is refused (409 naming them) unless
    ``force``, which cancels them first."""
    try:
        with corpus_lock(services.corpora, corpus_id):
            record = _get(services, corpus_id)
            active = _active_jobs(services, corpus_id)
            if active and not force:
                names = ", ".join(f"{job.id} ({job.state})" for job in active)
                message = f"corpus has unfinished jobs: {names}; cancel them or use force=true"
                raise api_error(409, message, "corpus_id")
            for job in active:
                cancel(services, job.id, kill=True)
            services.corpora.delete(record)
            if record.owns_files:
                shutil.rmtree(record.path, ignore_errors=True)
    except CorpusBusyError as exc:
        raise _busy(exc) from None
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def _receive(
    request: Request, services: Services, stem: str, decompress: bool
) -> uploads.Received:
    """The request body in a scratch folder, its limits (size, decompressed size, compression
    ratio) enforced while it streams in; a refusal names the limit."""
    settings = services.settings
    limits = uploads.UploadLimits.of(settings)
    try:
        return await uploads.receive(request, settings.home, stem, limits, decompress)
    except uploads.UploadTooLargeError as exc:
        raise api_error(413, str(exc), "body") from None
    except (uploads.EmptyUploadError, uploads.BadGzipError) as exc:
        raise api_error(422, str(exc), "body") from None


def _writable(record: CorpusRecord) -> CorpusRecord:
    if not record.writable:
        message = "registered datasets are read-only; upload a corpus instead"
        raise api_error(409, message, "corpus_id")
    if record.state != "ready":
        raise api_error(409, f"corpus is {record.state}", "corpus_id")
    return record


def _busy(exc: Exception) -> HTTPException:
    return api_error(409, str(exc), "corpus_id")


async def _store_file(
    request: Request,
    services: Services,
    corpus_id: str,
    stem: str,
    store: Callable[[uploads.Received, CorpusRecord, str], CorpusRecord],
) -> CorpusView:
    """Receive one file for the corpus, then, holding its write lock, re-read the record,
    check the file against the corpus's current files and swap it in (or leave all as it was)."""
    _writable(_get(services, corpus_id))
    received = await _receive(request, services, stem, decompress=True)

    def locked() -> CorpusRecord:
        with corpus_lock(services.corpora, corpus_id) as token:
            return store(received, _writable(_get(services, corpus_id)), token)

    try:
        record = await run_in_threadpool(locked)
    except DataError as exc:
        raise api_error(422, exc.reason, "body", exc.line) from None
    except (CorpusBusyError, PermissionError) as exc:
        raise _busy(exc) from None
    finally:
        uploads.discard(received)
    return _view(services, record)


def _file_upload(path: str, body: dict[str, Any]) -> Callable[[F], F]:
    """The route of a PUT that replaces one file of a corpus (raw body, described by ``body``)."""
    return router.put(
        path, response_model=CorpusView, responses=responses(404, 409, 413, 422), openapi_extra=body
    )


@_file_upload("/{corpus_id}/queries", JSONL_BODY)
async def upload_queries(
    corpus_id: str, request: Request, services: ServicesDep, _: PrincipalDep
) -> CorpusView:
    """Replace the corpus's ``queries.jsonl`` (raw body, JSONL or JSONL.gz)."""

    def store(received: uploads.Received, record: CorpusRecord, token: str) -> CorpusRecord:
        return corpus_files.store_queries(received, record, services.corpora, token)

    return await _store_file(request, services, corpus_id, "queries.jsonl", store)


@_file_upload("/{corpus_id}/qrels/{split}", TSV_BODY)
async def upload_qrels(
    corpus_id: str,
    split: Literal["train", "dev", "test"],
    request: Request,
    services: ServicesDep,
    _: PrincipalDep,
) -> CorpusView:
    """Replace ``qrels/<split>.tsv`` (header ``query-id corpus-id score``), checked against
    the stored corpus and queries."""

    def store(received: uploads.Received, record: CorpusRecord, token: str) -> CorpusRecord:
        return corpus_files.store_qrels(received, record, split, services.corpora, token)

    return await _store_file(request, services, corpus_id, f"{split}.tsv", store)
