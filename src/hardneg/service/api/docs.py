"""``/docs``: Swagger UI served from this server, so it works offline and under the CSP.

The Swagger UI files come from the PyPI package ``fastapi-offline`` (its ``static`` folder:
``swagger-ui-bundle.js``, ``swagger-ui.css``), mounted at ``/docs/assets``; nothing is fetched
from a CDN. The page's one inline script (Swagger's start-up call) is allowed by its hash in the
page's own Content-Security-Policy.
"""

from __future__ import annotations

import base64
import hashlib
import re
from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from hardneg.service.api.headers import CSP

ASSETS = "/docs/assets"
DOCS = "/docs"


def assets_folder() -> Path:
    return Path(str(files("fastapi_offline") / "static"))


def _inline_hashes(page: str) -> str:
    scripts = re.findall(r"<script>(.*?)</script>", page, flags=re.S)
    return " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'"
        for s in scripts
    )


def install_docs(app: FastAPI, openapi_url: str) -> None:
    """Serve Swagger UI at ``/docs`` and its files at ``/docs/assets``."""
    app.mount(ASSETS, StaticFiles(directory=assets_folder()), name="docs-assets")
    rendered = get_swagger_ui_html(
        openapi_url=openapi_url,
        title=f"{app.title} - API docs",
        swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS}/favicon.png",
    )
    page = bytes(rendered.body).decode()
    csp = CSP.replace("script-src 'self'", f"script-src 'self' {_inline_hashes(page)}", 1)

    @app.get(DOCS, include_in_schema=False)
    def docs() -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": csp})
