"""The application's routes as one flat list, whichever way FastAPI nests included routers.

Recent FastAPI keeps an included router as one entry of ``app.routes`` and offers
``iter_route_contexts`` to walk through it; older releases copy every route into ``app.routes``.
Each item has the route's ``path``, ``methods``, ``matches(scope)`` and ``openapi_extra``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.routing import BaseRoute, Match
from starlette.types import Scope


def api_routes(routes: Sequence[BaseRoute]) -> list[Any]:
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # FastAPI before nested routers
        return list(routes)
    return list(iter_route_contexts(routes))


def streams_own_body(route: Any) -> bool:
    """A route that reads its raw request body itself declares it in ``openapi_extra``."""
    return "requestBody" in (getattr(route, "openapi_extra", None) or {})


def matching(routes: Sequence[Any], scope: Scope) -> tuple[Any | None, set[str]]:
    """(the route serving this request or None, every method served at its path)."""
    found, methods = None, set()
    for route in routes:
        match, _ = route.matches(scope)
        if match == Match.FULL and found is None:
            found = route
        if match != Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return found, methods
