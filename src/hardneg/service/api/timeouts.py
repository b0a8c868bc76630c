"""A deadline on reading request bodies: a body trickled in (1 byte a second) is cut off.

:class:`BodyTimeoutMiddleware` wraps ``receive`` while the request body is still arriving:

1. each wait for the next chunk is at most ``body_timeout_seconds`` (a body that stops);
2. the whole body must arrive within ``body_timeout_seconds + received / min_rate``: after the
   first ``body_timeout_seconds`` it must keep an average of ``min_body_bytes_per_second``.

A request past either limit gets 408 with ``Connection: close`` (the socket is freed) and its
partial upload is removed like any failed upload. Once the body is complete ``receive`` is left
alone (responses that stream listen on it for the client's disconnect).
"""

from __future__ import annotations

import json
import time

import anyio
from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hardneg.service.api.asgi import HttpMiddleware


class BodyTimeoutError(HTTPException):
    def __init__(self, seconds: float, min_rate: int) -> None:
        message = (
            f"the request body did not arrive in time (a pause over {seconds:g} s, or slower "
            f"than {min_rate} bytes/s on average)"
        )
        super().__init__(
            status_code=408,
            detail={"message": message, "field": "body"},
            headers={"Connection": "close"},
        )


class BodyTimeoutMiddleware(HttpMiddleware):
    def __init__(self, app: ASGIApp, seconds: float, min_rate: int) -> None:
        super().__init__(app)
        self.seconds = seconds
        self.min_rate = min_rate

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.monotonic()
        received = 0
        done = False
        responded = False

        async def timed_receive() -> Message:
            nonlocal received, done
            if done:
                return await receive()
            allowance = self.seconds + (received / self.min_rate if self.min_rate else 1e9)
            wait = min(self.seconds, started + allowance - time.monotonic())
            message: Message | None = None
            with anyio.move_on_after(max(wait, 0.0)):
                message = await receive()
            if message is None:
                raise BodyTimeoutError(self.seconds, self.min_rate)
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                done = not message.get("more_body", False)
            else:
                done = True
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal responded
            if message["type"] == "http.response.start":
                responded = True
            await send(message)

        try:
            await self.app(scope, timed_receive, tracked_send)
        except BodyTimeoutError as exc:
            if responded:
                raise
            await _refuse(send, exc)


async def _refuse(send: Send, exc: BodyTimeoutError) -> None:
    body = json.dumps({"detail": exc.detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(body)),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 408, "headers": headers})
    await send({"type": "http.response.body", "body": body})
