"""Security headers on every response: a Content-Security-Policy that allows only this server
(the dashboard's one inline script by its hash, inline styles for its progress bars and for
Swagger UI), no framing, no MIME sniffing, no referrer."""

from __future__ import annotations

import base64
import hashlib

from starlette.types import Message, Receive, Scope, Send

from hardneg.service.api.asgi import HttpMiddleware
from hardneg.service.api.dashboard_html import SCRIPT


def _script_hash(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"


CSP = "; ".join(
    (
        "default-src 'self'",
        f"script-src 'self' {_script_hash(SCRIPT)}",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


class SecurityHeadersMiddleware(HttpMiddleware):
    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(name, value) for name, value in HEADERS if name not in present]
                message = dict(message, headers=[*message.get("headers", []), *extra])
            await send(message)

        await self.app(scope, receive, with_headers)
