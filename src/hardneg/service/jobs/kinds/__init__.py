"""One module per job kind: its params model and its ``run(params, context)`` adapter."""

from __future__ import annotations
