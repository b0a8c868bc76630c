"""Job kinds: one small registration each (params model, pipeline function).

A kind's ``params`` is the operation's spec, the pydantic model the API validates (misspelt or
out-of-range fields get a 422 naming them) and the CLI's options come from; ``run`` is the
``"module:function"`` the worker imports and calls as ``run(params, context) -> JobOutcome``.
Pipelines import torch and friends, so the API never imports ``run``: it only needs the spec.
Before a job is queued, :meth:`JobKind.check` refuses what the server owns (fields marked
:func:`hardneg.core.spec.server_owned`) and model references outside the allowed roots.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from hardneg.core.spec import refused_fields
from hardneg.miners.spec import MineSpec
from hardneg.service.jobs.context import JobContext, JobOutcome, ParamError, check_model_refs
from hardneg.service.jobs.kinds import adapt, evaluate, experiment, generate, mine, train
from hardneg.service.jobs.kinds.corpus import RegisterCorpusSpec
from hardneg.service.jobs.kinds.train import TrainJobSpec
from hardneg.service.pipelines.adapt.spec import AdaptSpec
from hardneg.service.pipelines.experiment.request import ExperimentSpec
from hardneg.service.settings import Settings
from hardneg.service.specs import EvaluateSpec, GenerateSpec

RunFunction = Callable[[Any, JobContext], JobOutcome]


@dataclass(frozen=True)
class JobKind:
    name: str
    params: type[BaseModel]
    run: str  # "module:function"
    description: str
    needs_corpus: bool = True
    public: bool = True  # submitted through POST /v1/jobs/<name>
    # "module:function" called as cleanup(params, settings) when a run is cancelled or given up,
    # even when its process was killed: removes what the kind writes outside its job folder.
    cleanup: str | None = None
    model_refs: tuple[str, ...] = ()  # params fields naming a model (checked as references)
    server_check: Callable[[Any, Settings], None] | None = None  # further checks of the kind

    def check(self, params: BaseModel, settings: Settings) -> None:
        """Raise :class:`ParamError` for what a request may not ask this server for."""
        refused = refused_fields(params)
        if refused:
            raise ParamError(refused[0], f"{', '.join(refused)}: set by the server, not a request")
        check_model_refs(params, self.model_refs, settings)
        if self.server_check is not None:
            self.server_check(params, settings)

    def load(self) -> RunFunction:
        run: RunFunction = _import(self.run)
        return run

    def clean_up(self, params: dict[str, object], settings: Settings) -> None:
        if self.cleanup is not None:
            _import(self.cleanup)(self.params.model_validate(params), settings)


def _import(reference: str) -> Any:
    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(module), name)


KINDS: dict[str, JobKind] = {
    kind.name: kind
    for kind in (
        JobKind(
            name="evaluate",
            params=EvaluateSpec,
            model_refs=evaluate.MODEL_FIELDS,
            run="hardneg.service.jobs.kinds.evaluate:run",
            description="Evaluate BM25 or a dense model on one split of the corpus.",
        ),
        JobKind(
            name="mine",
            params=MineSpec,
            run="hardneg.service.jobs.kinds.mine:run",
            model_refs=mine.MODEL_FIELDS,
            description="Mine hard negatives (bm25, dense, cross-encoder or llm) for one split, "
            "filtered against false negatives; mined.jsonl is paged by /results and every "
            "sentence-transformers layout is downloadable as JSONL and Parquet.",
        ),
        JobKind(
            name="train",
            params=TrainJobSpec,
            model_refs=train.MODEL_FIELDS,
            server_check=train.server_check,
            run="hardneg.service.jobs.kinds.train:run",
            description="Train STAR, ADORE, the contrastive baseline or a reranker on a mine "
            "job's negatives; reports metrics before and after on the corpus's eval split and "
            "publishes the model folder as model.tar.gz (later jobs may use it as job:<id>).",
        ),
        JobKind(
            name="generate",
            params=GenerateSpec,
            model_refs=generate.MODEL_FIELDS,
            run="hardneg.service.jobs.kinds.generate:run",
            description="Write queries for sampled passages with the server's LLM, keep those "
            "whose passage a retriever finds again (round trip), and register the result as a "
            "new corpus (stats.corpus_id) with qrels/train.tsv.",
        ),
        JobKind(
            name="experiment",
            params=ExperimentSpec,
            model_refs=experiment.MODEL_FIELDS,
            run="hardneg.service.jobs.kinds.experiment:run",
            description="Which negatives help on this corpus? Mine bm25, dense, cross-encoder and "
            "LLM negatives for one budget of queries; train each arm and the control arm none "
            "(in-batch negatives only) on the same queries and seeds with static-negative STAR "
            "(quick profile: 'STAR, frozen documents', the query tower against frozen document "
            "embeddings), then ADORE as a second stage that draws its own negatives; score on "
            "the test split after all training and compare arms with Holm-corrected paired "
            "tests (best_method is null unless one arm beats every other); report.md/json and "
            "plots are published as artifacts.",
        ),
        JobKind(
            name="adapt",
            params=AdaptSpec,
            model_refs=adapt.MODEL_FIELDS,
            run="hardneg.service.jobs.kinds.adapt:run",
            description="A corpus without training queries -> a retriever adapted to it: the "
            "server's LLM writes queries for passages spread over the corpus (round-trip and "
            "score filtered), negatives are mined and scored by a teacher, the bi-encoder trains "
            "with MarginMSE (GPL) and is validated on held-out generated queries; unless a "
            "checkpoint beats the base model there, the base model is returned and the stats "
            "say why. The adapted model is published as model.tar.gz (job:<id>).",
        ),
        JobKind(
            name="corpus",
            params=RegisterCorpusSpec,
            run="hardneg.service.jobs.kinds.corpus:run",
            cleanup="hardneg.service.jobs.kinds.corpus:cleanup",
            description="Download a BEIR dataset or read a server-side folder; count and check it.",
            public=False,
        ),
    )
}
