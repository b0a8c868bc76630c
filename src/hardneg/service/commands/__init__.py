"""CLI sub-commands, one module each. Every module exposes ``register(app: typer.Typer)``;
``hardneg.service.cli`` imports a module only when its command runs or shows its help, so the
modules import nothing heavy (torch, faiss, the pipelines) at the top: that happens in the
command's body."""

from __future__ import annotations
