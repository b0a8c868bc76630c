"""Error bodies of the REST API, the OpenAPI ``responses=`` that declare them, and the handlers.

Every error the API sends is JSON ``{"detail": {"message": ..., "field": ..., "line": ...}}``
naming the problem (``field`` is the request part at fault: ``body``, ``corpus_id``,
``params.model``, ``Authorization`` ...). The one exception is FastAPI's request validation,
whose 422 ``detail`` is a list of ``{loc, msg, type}`` items, one per bad field. Each route
declares the statuses it can send with :func:`responses`, so the OpenAPI schema describes every
response a client can get (the fuzz tests check exactly that).
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from hardneg.service.api.routing import api_routes, matching

logger = logging.getLogger(__name__)

REDIS_RETRY_AFTER_SECONDS = 2
Responses = dict[int | str, dict[str, Any]]  # FastAPI's ``responses=``


class ErrorDetail(BaseModel):
    message: str = Field(description="what is wrong, in words")
    field: str | None = Field(None, description="the request part at fault")
    line: int | None = Field(None, description="1-based line of an uploaded file")


class ErrorBody(BaseModel):
    detail: ErrorDetail


class ValidationIssue(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class InvalidRequestBody(BaseModel):
    detail: list[ValidationIssue] | ErrorDetail = Field(
        description="one item per invalid field (request validation), or one named problem"
    )


_DESCRIPTIONS = {
    400: "The request body cannot be read",
    401: "Missing or invalid API key",
    403: "The path lies outside the server's allowed roots",
    404: "No such resource",
    409: "The resource is in a state that does not allow this",
    410: "The artifact is no longer on disk",
    413: "The request body is larger than the server accepts",
    422: "A field of the request is invalid; the body names it",
    503: "Redis is unavailable or refuses writes; nothing was changed, retry after the delay",
}
_BEARER = {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}}
_RETRY = {"Retry-After": {"description": "seconds", "schema": {"type": "string"}}}


def responses(*codes: int) -> Responses:
    """OpenAPI ``responses=`` for these error statuses, with their bodies and headers."""
    declared: Responses = {}
    for code in codes:
        entry: dict[str, Any] = {
            "description": _DESCRIPTIONS[code],
            "model": InvalidRequestBody if code == 422 else ErrorBody,
        }
        if code == 401:
            entry["headers"] = _BEARER
        if code == 503:
            entry["headers"] = _RETRY
        declared[code] = entry
    return declared


def api_error(code: int, message: str, field: str, line: int | None = None) -> HTTPException:
    detail: dict[str, object] = {"message": message, "field": field}
    if line is not None:
        detail["line"] = line
    return HTTPException(status_code=code, detail=detail)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own errors (unknown route, method not allowed) in the API's error shape."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code in (204, 304) or exc.status_code < 200:
        return Response(status_code=exc.status_code, headers=exc.headers)
    if isinstance(exc.detail, dict):
        detail = exc.detail
    elif exc.status_code == 400:  # FastAPI could not decode a JSON body (not UTF-8, say)
        detail = {"message": "the request body cannot be parsed as UTF-8 JSON", "field": "body"}
    elif exc.status_code == 404:  # no route matched
        detail = {"message": f"no route {request.method} {request.url.path}", "field": "path"}
    else:
        detail = {"message": str(exc.detail)}
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        _, methods = matching(api_routes(request.app.routes), request.scope)
        headers["Allow"] = ", ".join(sorted(methods))
    return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=headers)


def _finite(value: Any) -> Any:
    """JSON-safe: a non-finite float (a client's NaN or Infinity echoed back) as its name."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


async def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422 list of issues, safe to render whatever the client sent."""
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": _finite(jsonable_encoder(exc.errors()))}, status_code=422)


async def _redis_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """Any Redis error: unreachable, or refusing writes (out of memory under ``noeviction``, a
    read-only replica, a script error). The routes change files only after Redis took the
    write, or put them back when it did not, so a 503 means nothing changed."""
    logger.warning("Redis error during %s %s: %r", request.method, request.url.path, exc)
    if isinstance(exc, RedisConnectionError | RedisTimeoutError):
        message = "the job store (Redis) is unavailable; retry shortly"
    else:
        message = "the job store (Redis) refused the request; nothing was changed, retry later"
    return JSONResponse(
        {"detail": {"message": message}},
        status_code=503,
        headers={"Retry-After": str(REDIS_RETRY_AFTER_SECONDS)},
    )


def install_handlers(app: FastAPI) -> None:
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(RedisError, _redis_unavailable)
