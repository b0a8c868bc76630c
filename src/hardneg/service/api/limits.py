"""A size limit on request bodies that FastAPI reads whole (JSON job and registration requests).

Upload routes stream their raw body to disk under ``max_upload_bytes`` themselves (they declare
their body in ``openapi_extra``); every other request body is refused with 413 past
:data:`MAX_JSON_BODY_BYTES`, before it is read into memory: by its Content-Length, or, for a
chunked body, once that many bytes have arrived.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hardneg.service.api.asgi import HttpMiddleware
from hardneg.service.api.routing import api_routes, matching, streams_own_body

MAX_JSON_BODY_BYTES = 1024 * 1024


def _too_large(limit: int) -> tuple[Message, Message]:
    detail = {"message": f"request body is larger than {limit} bytes", "field": "body"}
    body = json.dumps({"detail": detail}).encode()
    start: Message = {
        "type": "http.response.start",
        "status": 413,
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))],
    }
    return start, {"type": "http.response.body", "body": body}


class BodyLimitMiddleware(HttpMiddleware):
    def __init__(self, app: ASGIApp, routes: Any, limit: int = MAX_JSON_BODY_BYTES) -> None:
        super().__init__(app)
        self.api = routes  # the FastAPI app, whose routes say which ones stream
        self.limit = limit
        self._routes: list[Any] | None = None

    def _streams(self, scope: Scope) -> bool:
        if self._routes is None:  # routes are all in place by the first request
            self._routes = api_routes(self.api.routes)
        route, _ = matching(self._routes, scope)
        return route is not None and streams_own_body(route)

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        chunked = b"transfer-encoding" in headers
        small = length is not None and length.isdigit() and int(length) <= self.limit
        # most requests (every poll) have no body, or a small declared one: nothing to look up
        if (length is None and not chunked) or small or self._streams(scope):
            await self.app(scope, receive, send)
            return
        if length is not None:  # declared larger than the limit
            await self._refuse(send)
            return
        buffered = await self._buffer(receive)
        if buffered is None:
            await self._refuse(send)
            return
        await self.app(scope, _replay(buffered, receive), send)

    async def _buffer(self, receive: Receive) -> list[Message] | None:
        """The request's body messages, or None once they pass the limit."""
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                return messages
            size += len(message.get("body", b""))
            if size > self.limit:
                return None
            if not message.get("more_body", False):
                return messages

    async def _refuse(self, send: Send) -> None:
        for message in _too_large(self.limit):
            await send(message)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return replay
