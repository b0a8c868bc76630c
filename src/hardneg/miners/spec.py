"""What a mining run is asked to do: :class:`MineSpec`, the one model that the ``hardneg mine``
options are generated from, that ``POST /v1/jobs/mine`` takes as its ``params``, and that every
miner reads (through :class:`hardneg.miners.job.MiningJob`). No torch, faiss or pyarrow here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, get_args

from pydantic import Field, model_validator

from hardneg.core.index_params import BM25Params, DenseIndexConfig, DenseSearch
from hardneg.core.spec import Section, Spec, server_owned
from hardneg.miners.filters import FilterConfig
from hardneg.miners.llm.backends import BackendConfig, server_llm
from hardneg.miners.llm.prompts import NegativeVariant

Method = Literal["bm25", "dense", "cross-encoder", "llm"]
Layout = Literal["triplet", "n-tuple", "labeled-list"]
Format = Literal["jsonl", "parquet"]
METHODS: tuple[Method, ...] = get_args(Method)
LAYOUTS: tuple[Layout, ...] = get_args(Layout)
FORMATS: tuple[Format, ...] = get_args(Format)
SPLIT_PATTERN = r"^[A-Za-z0-9_-]{1,32}$"
MINED_FILE = "mined.jsonl"  # the file trainers read (hardneg.core.negatives)


class LLMNegatives(Section):
    """The ``llm`` method's generation settings (its backend is :class:`BackendConfig`)."""

    flat_prefix = "llm_"

    per_query: int | None = Field(
        None, ge=1, le=64, description="llm: generations per query (null: num_negatives)"
    )
    max_queries: int | None = Field(None, ge=1, description="llm: mine the first N queries only")
    prompt_file: Path | None = Field(
        None,
        description="llm: TOML prompt template (version, system, user)",
        json_schema_extra=server_owned("a file on the machine that runs the job"),
    )
    prompt_variant: NegativeVariant = Field(
        "query+positive", description="llm: built-in prompt (the query and its positive, or not)"
    )
    temperature: float = Field(0.8, ge=0, le=2, description="llm: sampling temperature")
    max_tokens: int = Field(160, ge=8, le=4096, description="llm: tokens per generated negative")
    seed: int | None = Field(None, ge=0, description="llm: first sampling seed (null: seed)")
    skip_failures: bool = Field(False, description="llm: skip queries whose LLM call fails")
    max_positive_cosine: float = Field(
        0.9, ge=-1, le=1, description="llm: drop negatives this close to a positive (cosine)"
    )
    max_positive_chars: int = Field(
        1200, ge=1, le=100_000, description="llm: the positive shown in the prompt is cut to this"
    )


class MineSpec(Spec):
    """Hard negatives for one split: the method, its models, the filters and the outputs."""

    split: str = Field(
        "train", pattern=SPLIT_PATTERN, description="qrels split that gets negatives"
    )
    method: Method = Field("bm25", description="how candidates are found and scored")
    model: str | None = Field(None, description="bi-encoder (dense; the cross-encoder's pool)")
    cross_encoder: str | None = Field(None, description="cross-encoder (method cross-encoder)")
    cross_encoder_max_length: int | None = Field(
        None, ge=8, le=4096, description="cross-encoder tokens per pair (null: the model's)"
    )
    filters: FilterConfig = Field(default_factory=FilterConfig)
    bm25: BM25Params = Field(default_factory=BM25Params)
    index: DenseIndexConfig = Field(default_factory=DenseIndexConfig)
    batch_size: int = Field(64, ge=1, le=4096, description="encoding batch size")
    processes: int = Field(
        1,
        ge=1,
        le=64,
        description="dense: torch.distributed processes (torchrun; gloo on CPU, one GPU each)",
    )
    max_length: int | None = Field(
        None, ge=8, le=8192, description="bi-encoder tokens per text (null: the model's)"
    )
    query_prompt: str = Field("", max_length=512, description="text put before every query")
    corpus_prompt: str = Field("", max_length=512, description="text put before every document")
    pool_depth: int = Field(30, ge=1, le=1000, description="cross-encoder: top-N per retriever")
    denoise_margin: float | None = Field(
        0.0, description="cross-encoder: drop candidates within this of a positive (null: off)"
    )
    layouts: tuple[Layout, ...] = Field(LAYOUTS, min_length=1, description="training layouts")
    formats: tuple[Format, ...] = Field(FORMATS, min_length=1, description="file formats")
    cache: bool = Field(True, description="reuse cached candidate lists and LLM outputs")
    probe: bool = Field(True, description="also run the false-negative probe (into stats)")
    llm: LLMNegatives = Field(default_factory=LLMNegatives)
    backend: BackendConfig = server_llm()

    @model_validator(mode="after")
    def _processes_are_for_dense(self) -> MineSpec:
        if self.processes > 1 and self.method != "dense":
            raise ValueError(f"processes > 1 shards dense mining only, not {self.method!r}")
        return self

    @property
    def dense_search(self) -> DenseSearch:
        """The bi-encoder's search settings (dense mining, the cross-encoder's dense pool)."""
        return DenseSearch(self.index, self.query_prompt, self.corpus_prompt, self.batch_size)
