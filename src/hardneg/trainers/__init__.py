"""Training and evaluating retrievers. Trainers read negatives files; they never import miners."""

from __future__ import annotations
