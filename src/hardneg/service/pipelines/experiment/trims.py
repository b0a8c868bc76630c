"""The report's words about the run that happened: what each stage and split did, what the
profile trims.

Written from the actual counts of the run (queries kept, budget, held-out queries), never from
the profile's nominal ones, so a corpus with 88 generated queries is not described as SciFact.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from hardneg.service.pipelines.experiment.data import ExperimentData
from hardneg.service.pipelines.experiment.profiles import GPL, NEGATIVES_OF, Profile
from hardneg.service.pipelines.experiment.request import ExperimentSpec


def stages_text(profile: Profile, arms: Collection[str]) -> dict[str, str]:
    """What the comparison stage and the second stage ran, naming the gpl arm's own stage."""
    comparison = (
        f"{profile.first_stage} (static negatives from each arm's file; the control arm none "
        "has in-batch negatives only)"
    )
    if GPL in arms:
        comparison += (
            f"; the {GPL} arm instead: {profile.stage_one_name(GPL)} (the {NEGATIVES_OF[GPL]} "
            "miner's negatives, every (query, positive) and (query, negative) pair scored by the "
            "cross-encoder; the student's margins regressed onto the teacher's, no in-batch "
            "negatives; the same steps, learning rate, batches and seeds)"
        )
    return {
        "comparison": comparison,
        "second": "ADORE from the comparison stage's model: it retrieves its own negatives "
        "every step and does not read the arm's negatives",
    }


def provenance_text(entry: Mapping[str, Any]) -> str:
    """Where an arm's negatives and scores came from, when not from a miner of its own."""
    parts = []
    if entry.get("negatives_from"):
        parts.append(f"the {entry['negatives_from']} miner's negatives")
    if entry.get("teacher"):
        parts.append(
            f"every pair scored by the cross-encoder `{entry['teacher'].get('cross_encoder')}`"
        )
    if parts:
        parts.append(f"comparison stage: {entry['comparison_stage']}")
    return "".join(f"; {part}" for part in parts)


def split_roles_text(data: ExperimentData) -> dict[str, str]:
    source = "LLM-written queries" if data.generated else "training queries"
    return {
        "train": f"{data.train_queries} {source} (of {data.available_queries} with a positive): "
        "mined and trained on by every arm",
        "val": f"{data.val_queries} other {source}: training curves and checkpoint choice",
        "reranker": f"{data.reranker_queries} other {source}: train the cross-encoder "
        "(when none is given); never in the budget or validation",
        "probe": f"{data.probe_queries} training queries with a positive hidden from the miners: "
        "the false-negative probe",
        "test": "the source's test split: final scores only, read after all training",
    }


def trims(request: ExperimentSpec, data: ExperimentData) -> list[str]:
    """What this run leaves out compared with a full-size one (empty for the full profile)."""
    profile = request.recipe
    if profile.name == "full":
        return []
    found: list[str] = [
        f"{data.train_queries} training queries per arm with {profile.num_negatives} mined "
        f"negative(s) each, {len(request.training_seeds)} seeds",
        f"{profile.first_stage}: the query tower trains against the base model's frozen document "
        "embeddings (the corpus is encoded once); the full profile trains the shared encoder"
        if profile.freeze_documents
        else "STAR trains the shared encoder",
        f"{profile.star_steps} comparison + {profile.adore_steps} ADORE steps of "
        f"{profile.batch_size} queries; ADORE retrieves the top {profile.adore_top_k}",
    ]
    uses = []
    if "cross-encoder" in request.methods:
        uses.append(f"rescores BM25 ∪ dense top {profile.pool_depth}")
    if GPL in request.methods:
        uses.append(f"scores the {GPL} arm's pairs (its teacher)")
    if uses and not request.cross_encoder:
        found.append(
            f"the cross-encoder is a MiniLM reranker trained here for {profile.reranker_steps} "
            f"steps on {data.reranker_queries} held-out queries; it {' and '.join(uses)} with "
            f"pairs cut to {profile.reranker_max_length} tokens"
        )
    if GPL in request.methods:
        queries = "LLM-written" if data.generated else "human"
        found.append(
            f"the {GPL} arm is GPL-style: {profile.stage_one_name(GPL)} for the same "
            f"{profile.star_steps} steps as the other arms' comparison stage, on the budget's "
            f"{queries} queries (GPL writes its own per passage) and {profile.num_negatives} "
            f"{NEGATIVES_OF[GPL]}-mined negative(s) per query"
        )
    if any(m.startswith("llm") for m in request.methods) or data.generated:
        found.append(
            f"LLM text comes from {request.llm.describe().get('model')}: "
            f"{profile.llm_max_tokens}-token negatives, positives shown cut to "
            f"{profile.llm_max_positive_chars} characters"
        )
    return found
