"""Pipelines chain core, miners and trainers into the jobs the CLI and the workers run."""

from __future__ import annotations
