"""The report's words about the run that happened: what each split did, what the profile trims.

Written from the actual counts of the run (queries kept, budget, held-out queries), never from
the profile's nominal ones, so a corpus with 88 generated queries is not described as SciFact.
"""

from __future__ import annotations

from hardneg.service.pipelines.experiment.data import ExperimentData
from hardneg.service.pipelines.experiment.request import ExperimentSpec


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
    if "cross-encoder" in request.methods and not request.cross_encoder:
        found.append(
            f"the cross-encoder is a MiniLM reranker trained here for {profile.reranker_steps} "
            f"steps on {data.reranker_queries} held-out queries; it rescores BM25 ∪ dense top "
            f"{profile.pool_depth} with pairs cut to {profile.reranker_max_length} tokens"
        )
    if any(m.startswith("llm") for m in request.methods) or data.generated:
        found.append(
            f"LLM text comes from {request.llm.describe().get('model')}: "
            f"{profile.llm_max_tokens}-token negatives, positives shown cut to "
            f"{profile.llm_max_positive_chars} characters"
        )
    return found
