"""The application: CLI, pipelines, REST API, settings, jobs and the Redis cache."""

from __future__ import annotations
