"""The specs of the operations the service runs itself (no torch here): evaluation and query
generation. Mining's is :class:`hardneg.miners.spec.MineSpec`, training's
:class:`hardneg.trainers.config.TrainSpec`, the experiment's
:class:`hardneg.service.pipelines.experiment.request.ExperimentSpec`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, get_args

from pydantic import Field

from hardneg.core.index_params import BM25Params, DenseIndexConfig, DenseSearch
from hardneg.core.spec import Spec, server_owned
from hardneg.miners.llm.backends import BackendConfig, server_llm
from hardneg.miners.spec import SPLIT_PATTERN
from hardneg.service.jobs.corpora import NAME_PATTERN

Retriever = Literal["bm25", "dense"]
RETRIEVERS: tuple[Retriever, ...] = get_args(Retriever)
EVAL_DEPTH = 100  # hits per query an evaluation retrieves


class EvaluateSpec(Spec):
    """One retriever on one split of a corpus."""

    split: str = Field("test", pattern=SPLIT_PATTERN, description="qrels split to evaluate")
    retriever: Retriever = Field("bm25", description="bm25 or dense")
    model: str | None = Field(
        None,
        description="dense only: a hub id, 'job:<id>' (a model trained by a job) or a folder "
        "under the allowed roots; default: the service's default model",
    )
    bm25: BM25Params = Field(default_factory=BM25Params)
    index: DenseIndexConfig = Field(default_factory=DenseIndexConfig)
    query_prompt: str = Field("", max_length=512, description="text put before every query")
    corpus_prompt: str = Field("", max_length=512, description="text put before every document")
    top_k: int = Field(10, ge=1, le=EVAL_DEPTH, description="hits per query kept in results")

    @property
    def dense_search(self) -> DenseSearch:
        return DenseSearch(self.index, self.query_prompt, self.corpus_prompt)


class GenerateSpec(Spec):
    """LLM-written queries for sampled passages of a corpus, kept when they find their passage."""

    name: str | None = Field(None, pattern=NAME_PATTERN, description="name of the new corpus")
    per_passage: int = Field(3, ge=1, le=20, description="queries asked for per passage")
    max_passages: int | None = Field(
        100, ge=0, description="passages to use (a seeded sample); 0 or null: all"
    )
    seed: int = Field(0, ge=0, description="passage sample and first sampling seed")
    round_trip: Retriever = Field(
        "bm25", description="a query is kept when this retriever finds its passage"
    )
    round_trip_k: int = Field(10, ge=1, le=1000, description="... in its top k")
    encoder: str | None = Field(None, description="bi-encoder of the dense round trip")
    prompt_file: Path | None = Field(
        None,
        description="TOML prompt template (version, system, user)",
        json_schema_extra=server_owned("a file on the machine that runs the job"),
    )
    temperature: float = Field(0.8, ge=0, le=2, description="sampling temperature")
    max_tokens: int = Field(48, ge=1, le=1024, description="tokens per generated query")
    max_passage_chars: int = Field(1500, ge=100, le=20000, description="passages are cut to this")
    skip_failures: bool = Field(False, description="count failed LLM calls instead of stopping")
    cache: bool = Field(True, description="reuse cached LLM outputs")
    llm: BackendConfig = server_llm()
