"""``hardneg experiment``: which negatives help on this corpus?

On one BEIR corpus, with one budget of training queries (:mod:`.data`):

1. mine negatives once per source (BM25, dense, cross-encoder, LLM-written), and run the
   false-negative probe for each corpus-document source (:mod:`hardneg.miners.probe`); the
   opt-in ``gpl`` arm reuses the dense miner's negatives and probe;
2. write one training file per arm, the control ``none`` (no hard negatives) included, each with
   the same queries in the same order (:mod:`.arms`); the gpl arm's pairs are then scored by
   the experiment's cross-encoder (the one the cross-encoder arm mines with);
3. for every training seed and arm: the comparison stage (static negatives: STAR, or "STAR,
   frozen documents"; MarginMSE on the teacher's margins for gpl), then ADORE from its model
   (:mod:`.training`), validated on ``val``;
   on a CPU several (arm, seed) runs train at once in worker processes (:mod:`.parallel`);
4. once everything is trained, score every model and the two baselines (BM25, the base model
   zero-shot) on the test split, per query;
5. compare arms with paired tests over per-query scores averaged over seeds, Holm-corrected
   (:mod:`.comparison`), and write the report (:mod:`.report`).

Each finished stage is recorded under ``stages/``, so a rerun after a crash continues where it
stopped; embeddings, candidates and LLM outputs also come from the workspace caches.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hardneg.core.beir import load_split
from hardneg.core.negatives import MinedQuery, read_mined
from hardneg.miners.cross_encoder import load_cross_encoder
from hardneg.miners.filters import FilterConfig
from hardneg.miners.pair_scores import CrossEncoderScorer
from hardneg.miners.probe import NOT_APPLICABLE, count_returned
from hardneg.miners.spec import LLMNegatives, MineSpec
from hardneg.service.pipelines.context import PipelineContext
from hardneg.service.pipelines.data import claim_output, find_dataset
from hardneg.service.pipelines.experiment.arms import control_rows, write_arm_file
from hardneg.service.pipelines.experiment.data import (
    ExperimentData,
    hidden_positives,
    prepare_data,
)
from hardneg.service.pipelines.experiment.parallel import (
    ArmRun,
    train_in_parallel,
    training_stage,
    worker_count,
)
from hardneg.service.pipelines.experiment.profiles import GPL, LLM_PROMPTS, NEGATIVES_OF
from hardneg.service.pipelines.experiment.report import build_report, write_report
from hardneg.service.pipelines.experiment.request import ExperimentSpec
from hardneg.service.pipelines.experiment.reranker import (
    hold_out_dev,
    reranker_config,
    reranker_summary,
)
from hardneg.service.pipelines.experiment.scores import score_distributions
from hardneg.service.pipelines.experiment.stages import (
    Arm,
    Distributions,
    Mined,
    Probe,
    Runs,
    Scored,
    StagedRun,
    Trained,
)
from hardneg.service.pipelines.experiment.training import (
    Recipe,
    score_on_test,
    stage_one_trainer,
    train,
)
from hardneg.service.pipelines.generate import run_generate_queries
from hardneg.service.pipelines.mine import run_mining
from hardneg.service.specs import GenerateSpec

logger = logging.getLogger(__name__)

REQUEST_FILE = "experiment.json"


@dataclass(frozen=True)
class ExperimentResult:
    output: Path
    report: dict[str, Any]
    files: dict[str, Path]


class Experiment(StagedRun):
    """One run of the experiment into ``output`` (see the module docstring)."""

    def __init__(self, request: ExperimentSpec, context: PipelineContext) -> None:
        super().__init__(context, request.model)
        self.request = request
        self.profile = request.recipe
        # one encoder backend for mining, the frozen documents of training and the test scores:
        # the corpus is encoded once, and every arm is scored against the documents it trained on
        device, backend = context.settings.device, context.settings.encoder_backend
        self.recipe = Recipe(self.profile, self.model, context.output / "data", device, backend)
        self.reranker: dict[str, Any] | None = None  # the cross-encoder trained here, if any
        self._cross_encoder: str | None = None  # the one every arm that needs it shares

    # --- data -----------------------------------------------------------------------------
    def prepare(self) -> ExperimentData:
        settings, profile = self.settings, self.profile
        source = find_dataset(self.request.data, settings, self.progress)
        counts = {
            "train_queries": profile.train_queries,
            "val_queries": profile.val_queries,
            "reranker_queries": profile.reranker_queries,
        }
        return prepare_data(
            source,
            self.output / "data",
            counts,
            self.request.seed,
            self.request.queries,
            generate=lambda: self.generate_queries(source),
        )

    def generate_queries(self, source: Path) -> Path:
        folder = self.output / "generated"
        spec = GenerateSpec(
            llm=self.request.llm,
            per_passage=1,
            max_passages=self.profile.generate_passages,
            seed=self.request.seed,
            encoder=self.model,
        )
        if not (folder / "qrels" / "train.tsv").is_file():
            run_generate_queries(spec, str(source), self.context.into(folder))
        return folder

    # --- negatives ------------------------------------------------------------------------
    def mine(
        self,
        method: str,
        split: str,
        folder: Path,
        num_negatives: int,
        cross_encoder: str | None = None,
    ) -> Mined:
        profile = self.profile
        llm = LLMNegatives(
            max_tokens=profile.llm_max_tokens,
            max_positive_chars=profile.llm_max_positive_chars,
            prompt_variant=LLM_PROMPTS.get(method, "query+positive"),
        )
        spec = MineSpec(
            split=split,
            method="llm" if method in LLM_PROMPTS else method,
            model=self.model,
            filters=FilterConfig(num_negatives=num_negatives, seed=self.request.seed),
            pool_depth=profile.pool_depth,
            cross_encoder=cross_encoder,
            cross_encoder_max_length=profile.reranker_max_length,
            layouts=("triplet",),
            formats=("jsonl",),
            probe=False,  # the experiment runs its own probe stage (split "probe")
            llm=llm,
            backend=self.request.llm,
        )
        data = str(self.output / "data")
        result = run_mining(spec, data, self.context.into(folder))
        return Mined(
            mined=str(result.files["mined"]),
            stats_file=str(result.files["stats"]),
            histogram=str(result.files["histogram"]),
            stats=dict(result.stats),
            seconds=dict(result.seconds),
        )

    def cross_encoder(self, data: ExperimentData) -> str:
        """The request's cross-encoder, else one trained here (once: later calls reuse it)."""
        if self.request.cross_encoder:
            return self.request.cross_encoder
        if self._cross_encoder is not None:
            return self._cross_encoder
        if not data.reranker_queries:
            raise ValueError(
                "no held-out training queries to train a cross-encoder on; pass --cross-encoder"
            )
        profile = self.profile
        mined = self.stages.run(
            "reranker-negatives",
            Mined,
            lambda: self.mine(
                "bm25", "reranker", self.output / "reranker" / "mined", profile.reranker_negatives
            ),
        )
        folder = self.output / "reranker" / "model"
        files = hold_out_dev(
            Path(mined.mined),
            profile.reranker_dev_share,
            self.request.seed,
            self.output / "reranker" / "split",
        )
        config = reranker_config(self.recipe, files, folder, self.request.seed)
        self.stages.run(
            "reranker-train",
            Trained,
            lambda: train("reranker", config, self.workspace, self.progress),
        )
        self.reranker = reranker_summary(folder, profile.reranker_negatives)
        self._cross_encoder = str(folder)
        return self._cross_encoder

    def probe(self, method: str, cross_encoder: str | None, hidden: dict[str, str]) -> Probe:
        """The false-negative probe: mine the probe split (one positive hidden per query)."""
        if method in LLM_PROMPTS:
            return Probe(hidden_positives=len(hidden), returned=None, rate=None,
                         note=NOT_APPLICABLE)  # fmt: skip
        if not hidden:
            return Probe(hidden_positives=0, returned=0, rate=None,
                         note="no training query has two positives")  # fmt: skip
        folder = self.output / "probe" / method
        mined = self.mine(method, "probe", folder, self.profile.num_negatives, cross_encoder)
        found = count_returned(read_mined(Path(mined.mined)), hidden)
        rate = None if found.rate is None else round(found.rate, 4)
        return Probe(hidden_positives=found.hidden_positives, returned=found.returned, rate=rate)

    def arm_file(
        self, arm: str, control: list[MinedQuery], mined: Path | None, teacher: str | None
    ) -> Arm:
        """Write ``arm``'s training file, its pairs scored by the cross-encoder ``teacher``."""
        settings = self.settings
        scorer = None
        if teacher:  # the cross-encoder, loaded as the cross-encoder miner loads it
            exports = self.workspace.encoder_exports
            model = load_cross_encoder(teacher, settings.device, self.profile.reranker_max_length,
                                       settings.encoder_backend, exports)  # fmt: skip
            scorer = CrossEncoderScorer(model, teacher)
        return write_arm_file(self.output / "arms" / f"{arm}.jsonl", arm, control, mined, scorer)

    # --- training -------------------------------------------------------------------------
    def train_arm(self, arm: str, training_file: str, rows: int, seed: int) -> dict[str, Trained]:
        """Both stages of one (arm, seed); the keys name the slots ("star": the comparison
        stage, whichever trainer ran it; "star_adore": ADORE from it)."""
        root = self.output / "models" / arm / f"seed{seed}"
        kind = stage_one_trainer(arm)  # star, or margin-mse for the gpl arm
        folder = root / kind.replace("-", "_")
        first = self.recipe.stage_one(training_file, folder, seed, rows)
        star = self.stages.run(
            training_stage(arm, seed, kind),
            Trained,
            lambda: train(kind, first, self.workspace, self.progress),
        )
        second = self.recipe.adore(training_file, folder, root / f"{folder.name}_adore", seed, rows)
        adore = self.stages.run(
            training_stage(arm, seed, "adore"),
            Trained,
            lambda: train("adore", second, self.workspace, self.progress),
        )
        return {"star": star, "star_adore": adore}

    def train_many(self, runs: list[ArmRun]) -> None:
        """Train ``runs`` in worker processes when more than one is set (:mod:`.parallel`); the
        caller's loop then reads their recorded stages (or trains them itself, with one)."""
        workers = worker_count(self.settings.train_processes, self.settings.device)
        if workers > 1 and len(runs) > 1:
            # a context the workers can unpickle: no progress callback, the disk cache
            context = PipelineContext(self.settings, self.output)
            job = functools.partial(train_in_worker, self.request, context)
            train_in_parallel(runs, job, min(workers, len(runs)), self.progress)

    def test_scores(self, name: str, model: str | None) -> Scored:
        return self.stages.run(
            f"test-{name}",
            Scored,
            lambda: score_on_test(
                self.output / "data",
                model,
                self.workspace,
                self.settings.device,
                self.progress,
                self.settings.encoder_backend,
            ),
        )

    # --- the whole run --------------------------------------------------------------------
    def run(self) -> ExperimentResult:
        started = time.perf_counter()
        data = self.prepare()
        control = control_rows(load_split(data.folder, "train"))
        hidden = hidden_positives(data.folder)
        mined: dict[str, Mined] = {}
        probes: dict[str, Probe] = {}
        teacher = self.cross_encoder(data) if GPL in self.request.methods else None
        for method in self.request.methods:
            source = NEGATIVES_OF.get(method, method)  # gpl: the dense miner's, mined once
            cross_encoder = self.cross_encoder(data) if source == "cross-encoder" else None
            folder = self.output / "mined" / source
            mine = functools.partial(
                self.mine, source, "train", folder, self.profile.num_negatives, cross_encoder
            )
            mined[method] = self.stages.run(f"mine-{source}", Mined, mine)
            probe = functools.partial(self.probe, source, cross_encoder, hidden)
            probes[method] = self.stages.run(f"probe-{source}", Probe, probe)
            if source != method:  # the same negatives: the same figures, said so
                found = probes[method]
                note = f"the {source} miner's negatives: the {source} probe's figures"
                note += f"; {found.note}" if found.note else ""
                probes[method] = replace(found, note=note)
        arms: dict[str, Arm] = {}
        for arm in self.request.arms:
            source_file = Path(mined[arm].mined) if arm in mined else None
            scored_by = teacher if arm == GPL else None
            write = functools.partial(self.arm_file, arm, control, source_file, scored_by)
            arms[arm] = self.stages.run(f"arm-{arm}", Arm, write)
        if len({a.query_ids_sha for a in arms.values()}) != 1:
            raise RuntimeError("arms were given different training queries")  # never by design
        runs = [
            ArmRun(arm, info.training_file, info.queries_trained, seed)
            for seed in self.request.training_seeds
            for arm, info in arms.items()
        ]
        self.train_many([run for run in runs if not self.stages.recorded(run.last_stage)])
        trained: dict[str, dict[int, dict[str, Trained]]] = {arm: {} for arm in arms}
        for seed in self.request.training_seeds:
            for arm, info in arms.items():
                trained[arm][seed] = self.train_arm(
                    arm, info.training_file, info.queries_trained, seed
                )
        # the test split is read from here on only
        baselines = {"bm25": self.test_scores("bm25", None)}
        baselines["zero-shot"] = self.test_scores("zero-shot", self.model)
        tested: dict[str, dict[int, dict[str, Scored]]] = {arm: {} for arm in arms}
        for arm, seeds in trained.items():
            for seed, stages in seeds.items():
                tested[arm][seed] = {  # named by the stage's folder: star, margin_mse, ...
                    stage: self.test_scores(f"{arm}-s{seed}-{Path(run.output).name}", run.output)
                    for stage, run in stages.items()
                }
        scores = self.stages.run(
            "scores",
            Distributions,
            lambda: score_distributions(
                data.folder,
                {m: Path(v.mined) for m, v in mined.items()},
                self.model,
                self.workspace,
                self.settings.device,
                self.settings.encoder_backend,
            ),
        )
        report = build_report(
            self.request,
            data,
            baselines,
            Runs(mined, probes, arms, trained, tested),
            scores,
            wall_seconds=time.perf_counter() - started,
            stage_seconds=self.stages.seconds,
            reranker=self.reranker,
            numerics=self.recipe.numerics(),
        )
        files = write_report(self.output, report, trained, scores)
        return ExperimentResult(self.output, report, files)


def train_in_worker(request: ExperimentSpec, context: PipelineContext, run: ArmRun) -> None:
    """A worker process's job: train one (arm, seed), recording its stages (:mod:`.parallel`)."""
    experiment = Experiment(request, context)
    experiment.train_arm(run.arm, run.training_file, run.rows, run.seed)


def run_experiment(request: ExperimentSpec, context: PipelineContext) -> ExperimentResult:
    """Run (or continue) the experiment into ``context.output``; returns the report and its
    files."""
    claim_output(context.output, REQUEST_FILE, describe(request), "an experiment")
    return Experiment(request, context).run()


def describe(request: ExperimentSpec) -> dict[str, Any]:
    """What the recorded stages depend on: a rerun must ask for the same thing to reuse them."""
    return {
        "data": request.data,
        "profile": request.recipe.to_dict(),
        "methods": list(request.methods),
        "model": request.model,
        "cross_encoder": request.cross_encoder,
        "llm": request.llm.describe(),
        "seed": request.seed,
        "training_seeds": request.training_seeds,
        "queries": request.queries,
    }
