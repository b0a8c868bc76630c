"""``adapt``: a corpus and nothing else → a retriever for it, or the base model and why.

1. **queries**: the LLM writes queries for passages spread over the corpus (few-shot in the
   corpus's style), cleaned, round-trip filtered and score filtered
   (:mod:`hardneg.miners.llm.training_queries`); they are cut by passage into ``train`` and a
   ``val`` slice (:mod:`.data`);
2. **negatives** mined for the training queries (BM25 or dense);
3. **teacher scores** for every (query, positive) and (query, negative) pair
   (:mod:`hardneg.miners.pair_scores`: a cross-encoder, or offline the hybrid teacher);
4. **MarginMSE** (GPL) training, validated on ``val`` every ``eval_steps``: the best
   checkpoint is kept (:mod:`hardneg.trainers.margin_mse`);
5. **do no harm**: unless the chosen checkpoint beats the base model's validation nDCG@10 (by
   ``min_gain``), the run returns the base model and says so.

Only generated queries are read: a test split of the source is never opened here. Each stage is
recorded under ``stages/``, so rerunning the same request continues where it stopped; a
different request into the same folder is refused.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hardneg.core.atomic import write_text_atomic
from hardneg.core.beir import Corpus, find_corpus_file, load_corpus
from hardneg.core.bm25 import BM25Index
from hardneg.core.encoders import load_encoder
from hardneg.miners.cross_encoder import load_cross_encoder
from hardneg.miners.filters import FilterConfig
from hardneg.miners.llm.backends import open_client
from hardneg.miners.llm.client import SamplingParams
from hardneg.miners.llm.queries import TextRetriever, bm25_retriever, corpus_dense_retriever
from hardneg.miners.llm.training_queries import TrainingQueryConfig, training_queries
from hardneg.miners.pair_scores import CrossEncoderScorer, HybridScorer, PairScorer
from hardneg.miners.pair_scores import score_mined_file as score_file
from hardneg.miners.spec import MineSpec
from hardneg.service.pipelines.adapt.data import VAL_SPLIT, split_by_passage, write_adapt_data
from hardneg.service.pipelines.adapt.report import AdaptStages, build_report
from hardneg.service.pipelines.adapt.spec import AdaptSpec
from hardneg.service.pipelines.adapt.stages import GeneratedQueries, MinedNegatives, TeacherScores
from hardneg.service.pipelines.context import PipelineContext
from hardneg.service.pipelines.data import claim_output, find_dataset
from hardneg.service.pipelines.experiment.stages import StagedRun, Trained
from hardneg.service.pipelines.mine import run_mining
from hardneg.trainers.config import config_from_mapping
from hardneg.trainers.launch import trainer_for

logger = logging.getLogger(__name__)

REQUEST_FILE = "adapt-request.json"
REPORT_FILE = "report.json"


@dataclass(frozen=True)
class AdaptResult:
    output: Path
    model: str  # the adapted model's folder, or the base model when no checkpoint beat it
    adapted: bool
    report: dict[str, Any]


def query_config(spec: AdaptSpec) -> TrainingQueryConfig:
    options = spec.queries
    stop: tuple[str, ...] = ()
    if options.stop_at_question:
        stop = ("?", "\n", ". ") if options.per_call == 1 else ("\n\n",)
    return TrainingQueryConfig(
        passages=options.passages,
        per_passage=options.per_passage,
        per_call=options.per_call,
        few_shot=options.prompt == "few-shot",
        examples=tuple(options.examples),
        bootstrap_passages=options.bootstrap_passages,
        demos=options.demos,
        round_trip_k=options.round_trip_k,
        keep_share=options.keep_share,
        sampling=SamplingParams(
            max_tokens=options.max_tokens * options.per_call,
            temperature=options.temperature,
            seed=spec.seed,
            stop=stop,
        ),
        max_words=options.max_words,
        max_passage_chars=options.max_passage_chars,
        seed=spec.seed,
    )


class Adaptation(StagedRun):
    """One adapt run into ``output`` (see the module docstring)."""

    def __init__(self, spec: AdaptSpec, data: str, context: PipelineContext) -> None:
        super().__init__(context, spec.model)
        self.spec, self.data = spec, data
        self._scorer: PairScorer | None = None
        self._bm25: BM25Index | None = None

    # --- shared pieces, loaded on first use ------------------------------------------------
    def bm25(self, corpus: Corpus) -> BM25Index:
        if self._bm25 is None:
            self._bm25 = self.workspace.bm25_index(corpus, progress=self.progress)
        return self._bm25

    def scorer(self, corpus: Corpus) -> PairScorer:
        if self._scorer is None:
            spec, device = self.spec, self.settings.device
            if spec.teacher == "cross-encoder" and spec.cross_encoder:
                model = load_cross_encoder(spec.cross_encoder, device)
                self._scorer = CrossEncoderScorer(model, spec.cross_encoder)
            else:
                encoder = load_encoder(self.model, device)
                scale = 20.0  # the trainers' default similarity scale: the student's units
                self._scorer = HybridScorer(
                    encoder, self.bm25(corpus), corpus, spec.hybrid_weight, scale
                )
        return self._scorer

    def retriever(self, corpus: Corpus) -> TextRetriever:
        if self.spec.queries.round_trip == "bm25":
            return bm25_retriever(self.bm25(corpus))
        model = load_encoder(self.model, self.settings.device)
        return corpus_dense_retriever(model, corpus, self.workspace, self.progress)

    # --- stages ----------------------------------------------------------------------------
    def queries(self, source: Path, corpus: Corpus) -> GeneratedQueries:
        llm = self.spec.llm
        with open_client(llm, self.workspace.llm_exports) as client:
            result = training_queries(
                client,
                corpus,
                self.retriever(corpus),
                self.scorer(corpus),
                query_config(self.spec),
                self.cache,
                self.progress,
            )
            fingerprint = client.fingerprint
        split = split_by_passage(result.queries, self.spec.train.val_share, self.spec.seed)
        if not split.train or not split.val:
            raise ValueError(
                f"only {len(result.queries)} generated queries survived the filters "
                f"({json.dumps(result.report.to_json()['dropped'])}): too few to train and "
                "validate; raise queries.passages or loosen the filters"
            )
        folder = write_adapt_data(self.output / "data", source, split)
        return GeneratedQueries(
            folder=str(folder),
            passages=result.passages,
            report=result.report.to_json(),
            generation=result.stats.to_json(),
            prompt=result.prompt,
            llm=llm.describe() | {"fingerprint": fingerprint},
            queries=len(result.queries),
            train_queries=len(split.train),
            val_queries=len(split.val),
            train_passages=split.train_passages,
            val_passages=split.val_passages,
        )

    def negatives(self, data: Path) -> MinedNegatives:
        options = self.spec.train
        spec = MineSpec(
            split="train",
            method=options.negatives_method,
            model=self.model,
            filters=FilterConfig(num_negatives=options.num_negatives, seed=self.spec.seed),
            layouts=("triplet",),
            formats=("jsonl",),
            probe=False,
        )
        mined = PipelineContext(self.settings, self.output / "mined", self.progress)  # disk cache
        result = run_mining(spec, str(data), mined)
        return MinedNegatives(mined=str(result.files["mined"]), stats=dict(result.stats))

    def teacher(self, mined: Path, corpus: Corpus) -> TeacherScores:
        exports = score_file(mined, self.scorer(corpus), self.output / "scored", self.progress)
        rows = sum(1 for _ in exports.mined.open())
        return TeacherScores(
            scored=str(exports.mined), rows=rows, teacher=self.scorer(corpus).describe()
        )

    def train(self, data: Path, teacher: TeacherScores) -> Trained:
        options = self.spec.train
        values: dict[str, object] = {
            "model": self.model,
            "negatives": teacher.scored,
            "output_dir": str(self.output / "model"),
            "data": str(data),
            "corpus": str(data),
            "split": VAL_SPLIT,
            "dev_split": VAL_SPLIT,
            "eval_before": True,
            "eval_steps": options.eval_steps,
            "save_steps": options.eval_steps,
            "max_steps": options.steps,
            "learning_rate": options.learning_rate,
            "per_device_batch_size": min(options.batch_size, teacher.rows),
            "negatives_per_query": options.negatives_per_step,
            "max_doc_length": options.max_doc_length,
            "freeze_documents": options.freeze_documents,
            "seed": self.spec.seed,
            "logging_steps": max(1, options.eval_steps // 5),
        }
        if self.settings.device:
            values["device"] = self.settings.device
        config = config_from_mapping(values, "adapt spec")
        summary = trainer_for("margin-mse")(config, self.workspace, self.progress)
        return Trained(output=str(config.train.output_dir), summary=summary)

    def run(self) -> AdaptResult:
        started = time.perf_counter()
        source = find_dataset(self.data, self.settings, self.progress)
        corpus = load_corpus(find_corpus_file(source))
        run = self.stages.run
        queries = run("queries", GeneratedQueries, lambda: self.queries(source, corpus))
        data = Path(queries.folder)
        mined = run("negatives", MinedNegatives, lambda: self.negatives(data))
        scored = run("teacher", TeacherScores, lambda: self.teacher(Path(mined.mined), corpus))
        trained = run("train", Trained, lambda: self.train(data, scored))
        report = build_report(
            self.spec,
            self.data,
            self.model,
            AdaptStages(queries, mined, scored, trained),
            self.stages.seconds,
            time.perf_counter() - started,
        )
        write_text_atomic(self.output / REPORT_FILE, json.dumps(report, indent=2, default=str))
        return AdaptResult(self.output, report["model"], report["adapted"], report)


def run_adapt(spec: AdaptSpec, data: str, context: PipelineContext) -> AdaptResult:
    """Run (or continue) an adapt run of the corpus ``data`` names (a BEIR folder, only its
    corpus read, or a dataset name) into ``context.output``; returns the model to use and the
    report."""
    claim_output(context.output, REQUEST_FILE, spec.describe(data), "an adapt run")
    return Adaptation(spec, data, context).run()
