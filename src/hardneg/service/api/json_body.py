"""JSON bodies whatever form content type the client declared.

``curl -d '{...}'`` (the README's examples) sends ``application/x-www-form-urlencoded``, which
FastAPI would parse as a form and answer 422. Every JSON route under ``/v1`` takes JSON only,
and the upload routes read their raw body whatever its type, so such a request's declared type
is read as ``application/json``. The dashboard's sign-in form (``/login``) is not under ``/v1``
and keeps its form.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

FORM = b"application/x-www-form-urlencoded"
API_PREFIX = "/v1/"


class JsonBodyMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(API_PREFIX):
            headers = scope.get("headers") or []
            declared = [value for name, value in headers if name == b"content-type"]
            if declared and declared[0].split(b";")[0].strip().lower() == FORM:
                rewritten = [(n, v) for n, v in headers if n != b"content-type"]
                rewritten.append((b"content-type", b"application/json"))
                scope = dict(scope, headers=rewritten)
        await self.app(scope, receive, send)
