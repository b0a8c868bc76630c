"""The option vocabularies the commands' signatures need, without importing the modules that
define them (those load faiss, torch or the miners): ``hardneg COMMAND --help`` stays instant.

tests/test_cli_help.py checks that each one equals its source of truth.
"""

from __future__ import annotations

from typing import Literal

IndexKind = Literal["flat", "ivf", "hnsw"]  # hardneg.core.dense.IndexKind
Precision = Literal["fp32", "fp16", "bf16"]  # hardneg.trainers.config.Precision
TRAINER_KINDS: tuple[str, ...] = (
    "star",
    "adore",
    "baseline",
    "reranker",
    "margin-mse",
)  # pipelines.train
MINE_METHODS: tuple[str, ...] = ("bm25", "dense", "cross-encoder", "llm")  # pipelines.mine
LAYOUTS: tuple[str, ...] = ("triplet", "n-tuple", "labeled-list")  # hardneg.miners.output
FORMATS: tuple[str, ...] = ("jsonl", "parquet")  # hardneg.miners.output
