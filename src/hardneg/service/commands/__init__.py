"""CLI sub-commands, one module each. Every module exposes ``register(app: typer.Typer)``;
``hardneg.service.cli`` calls them all."""

from __future__ import annotations
