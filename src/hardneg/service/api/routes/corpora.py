"""``/v1/corpora``: upload, register (BEIR name or server path), list, detail, delete."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import replace
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response, status
from starlette.concurrency import run_in_threadpool

from hardneg.core.beir import DataError
from hardneg.core.download import validate_dataset_name
from hardneg.service.api import corpus_files, uploads
from hardneg.service.api.deps import IdempotencyKey, PrincipalDep, ServicesDep
from hardneg.service.api.errors import Responses, api_error, responses
from hardneg.service.api.schemas import MAX_OFFSET, CorpusView, Page, RegisterBeir, RegisterPath
from hardneg.service.api.security import Principal
from hardneg.service.jobs.corpora import NAME_PATTERN, CorpusRecord, CorpusSource, new_corpus_id
from hardneg.service.jobs.paths import PathRefusedError, confine
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
    try:
        received = await uploads.receive(
            request, settings.home, "corpus.jsonl", settings.max_upload_bytes
        )
    except uploads.UploadTooLargeError as exc:
        raise api_error(413, str(exc), "body") from None
    except uploads.EmptyUploadError as exc:
        raise api_error(422, str(exc), "body") from None
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
    services: Services, source: CorpusSource, ref: str, name: str, params: Mapping[str, object]
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
    submission = submit(services, kind, kind.params.model_validate(params), record)
    job_id = submission.record.id
    updated = services.corpora.update(record.id, lambda old: replace(old, job_id=job_id))
    return updated or record, True


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
    params = {"source": "beir", "name": name, "md5": body.md5}
    record, created = _register(services, "beir", name, name, params)
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
    except PathRefusedError as exc:
        raise api_error(403, str(exc), "path") from None
    if not folder.is_dir():
        raise api_error(422, "no folder at that path", "path")
    params = {"source": "path", "path": str(folder)}
    record, created = _register(services, "path", str(folder), body.name or folder.name, params)
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


@router.delete("/{corpus_id}", status_code=status.HTTP_204_NO_CONTENT, responses=responses(404))
def delete_corpus(corpus_id: str, services: ServicesDep, _: PrincipalDep) -> Response:
    """Forget a corpus; uploaded and generated corpora's files are deleted, registered folders
    are kept."""
    record = _get(services, corpus_id)
    services.corpora.delete(record)
    if record.owns_files:
        shutil.rmtree(record.path, ignore_errors=True)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def _receive_for(
    request: Request, services: Services, record: CorpusRecord, stem: str
) -> uploads.Received:
    if not record.writable:
        message = "registered datasets are read-only; upload a corpus instead"
        raise api_error(409, message, "corpus_id")
    if record.state != "ready":
        raise api_error(409, f"corpus is {record.state}", "corpus_id")
    try:
        return await uploads.receive(
            request, services.settings.home, stem, services.settings.max_upload_bytes
        )
    except uploads.UploadTooLargeError as exc:
        raise api_error(413, str(exc), "body") from None
    except uploads.EmptyUploadError as exc:
        raise api_error(422, str(exc), "body") from None


@router.put(
    "/{corpus_id}/queries",
    response_model=CorpusView,
    responses=responses(404, 409, 413, 422),
    openapi_extra=JSONL_BODY,
)
async def upload_queries(
    corpus_id: str, request: Request, services: ServicesDep, _: PrincipalDep
) -> CorpusView:
    """Replace the corpus's ``queries.jsonl`` (raw body, JSONL or JSONL.gz)."""
    received = await _receive_for(request, services, _get(services, corpus_id), "queries.jsonl")
    try:
        record = await run_in_threadpool(
            corpus_files.store_queries, received, _get(services, corpus_id), services.corpora
        )
    except DataError as exc:
        raise api_error(422, exc.reason, "body", exc.line) from None
    finally:
        uploads.discard(received)
    return _view(services, record)


@router.put(
    "/{corpus_id}/qrels/{split}",
    response_model=CorpusView,
    responses=responses(404, 409, 413, 422),
    openapi_extra=TSV_BODY,
)
async def upload_qrels(
    corpus_id: str,
    split: Literal["train", "dev", "test"],
    request: Request,
    services: ServicesDep,
    _: PrincipalDep,
) -> CorpusView:
    """Replace ``qrels/<split>.tsv`` (header ``query-id corpus-id score``), checked against
    the stored corpus and queries."""
    received = await _receive_for(request, services, _get(services, corpus_id), f"{split}.tsv")
    try:
        record = await run_in_threadpool(
            corpus_files.store_qrels, received, _get(services, corpus_id), split, services.corpora
        )
    except DataError as exc:
        raise api_error(422, exc.reason, "body", exc.line) from None
    finally:
        uploads.discard(received)
    return _view(services, record)
