"""The REST API (FastAPI): corpora, jobs, results and artifacts under ``/v1``; health and metrics.

``create_app(settings)`` builds the app; ``hardneg serve`` runs it with uvicorn.
"""

from __future__ import annotations
