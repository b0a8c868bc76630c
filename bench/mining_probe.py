"""The false-negative probe per method and filter setting (a section of bench/mining.py).

For every SciFact training query with two or more positives, one positive is hidden from the
miner (seeded, :mod:`hardneg.miners.probe`); the rate is the share of hidden positives that come
back as a mined negative. Filter settings, each on top of the always-on exclusion of judged
documents:

- ``no_filter``: the top negatives as ranked;
- ``rank_window``: skip the 10 best candidates, consider the next 40 (sentence-transformers'
  ``range_min`` / ``range_max`` habit);
- ``margins``: drop candidates scoring above 95% of the lowest positive's score
  (NV-Retriever's TopK-PercPos);
- cross-encoder only: its pool rescored with RocketQA-style denoising on (``denoise``) and off.
"""

from __future__ import annotations

from pathlib import Path

from hardneg.core.beir import BeirSplit
from hardneg.core.workspace import Workspace
from hardneg.miners.bm25 import mine_bm25
from hardneg.miners.cross_encoder import mine_cross_encoder
from hardneg.miners.dense import mine_dense
from hardneg.miners.filters import FilterConfig
from hardneg.miners.job import MinerFn, MiningJob
from hardneg.miners.probe import hide_positives
from hardneg.miners.spec import Method, MineSpec
from hardneg.service.pipelines.mine import false_negative_probe

NEGATIVES = 5
SETTINGS: dict[str, FilterConfig] = {
    "no_filter": FilterConfig(num_negatives=NEGATIVES),
    "rank_window": FilterConfig(num_negatives=NEGATIVES, range_min=10, range_max=50),
    "margins": FilterConfig(num_negatives=NEGATIVES, relative_margin=0.05),
}
SEED = 0


def bench_probe(
    split: BeirSplit, home: Path, work: Path, cross_encoder: Path | None
) -> dict[str, object]:
    """Probe rates per method and setting; ``home`` holds the dense run's corpus embeddings."""
    workspace = Workspace(home)

    def job(method: Method, filters: FilterConfig, **spec: object) -> MiningJob:
        return MiningJob(
            MineSpec.model_validate(
                {"method": method, "filters": filters, "batch_size": 64, **spec}
            ),
            split,
            workspace,
        )

    result: dict[str, object] = {
        "queries_probed": len(hide_positives(split.qrels, SEED, split.queries).hidden),
        "seed": SEED,
        "negatives_per_query": NEGATIVES,
    }
    miners: tuple[tuple[Method, MinerFn], ...] = (("bm25", mine_bm25), ("dense", mine_dense))
    for method, miner in miners:
        result[method] = {
            name: false_negative_probe(miner, job(method, filters), SEED)
            for name, filters in SETTINGS.items()
        }
    if cross_encoder is not None:
        ce = {
            "cross_encoder": str(cross_encoder),
            "cross_encoder_max_length": 256,
            "pool_depth": 10,
        }
        no_filter = SETTINGS["no_filter"]
        result["cross-encoder"] = {
            name: false_negative_probe(
                mine_cross_encoder,
                job("cross-encoder", no_filter, denoise_margin=margin, **ce),
                SEED,
            )
            for name, margin in (("denoise", 0.0), ("no_denoise", None))
        }
    return result
