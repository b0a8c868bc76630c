"""Sharded encoding and dense mining under torchrun (2 gloo processes) equal one process."""

from __future__ import annotations

import gzip
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from hardneg.core.beir import load_qrels
from hardneg.core.negatives import read_mined
from hardneg.core.sharded import MainRankCache, Shards, shared_cache
from hardneg.miners.disk_cache import DiskCache
from hardneg.miners.filters import FilterConfig
from hardneg.miners.spec import MineSpec
from hardneg.service.pipelines.context import PipelineContext
from hardneg.service.pipelines.mine import run_mining
from hardneg.service.settings import Settings
from tests.conftest import write_beir

REPO = Path(__file__).resolve().parents[1]
N_QUERIES = 24
N_DOCS = 200


def scifact_slice(scifact: Path, folder: Path) -> Path:
    """A BEIR folder of 24 real SciFact test queries and 200 documents holding their positives."""
    qrels = load_qrels(scifact / "qrels" / "test.tsv")
    query_ids = sorted(qrels)[:N_QUERIES]
    wanted = {d for q in query_ids for d in qrels[q]}
    with gzip.open(scifact / "corpus.jsonl.gz", "rt", encoding="utf-8") as handle:
        docs = [json.loads(line) for line in handle]
    chosen = [d for d in docs if d["_id"] in wanted]
    chosen += [d for d in docs if d["_id"] not in wanted][: N_DOCS - len(chosen)]
    queries = [json.loads(line) for line in (scifact / "queries.jsonl").open()]
    queries = [q for q in queries if q["_id"] in set(query_ids)]
    pairs = [(q, d, g) for q in query_ids for d, g in qrels[q].items()]
    return write_beir(folder, chosen, queries, pairs)


def embeddings_of(home: Path) -> tuple[np.ndarray, dict[str, object]]:
    (matrix,) = (home / "embeddings").rglob("*.npy")
    return np.load(matrix), json.loads(matrix.with_suffix(".json").read_text())


def test_two_gloo_ranks_encode_and_mine_like_one_process(scifact_dir: Path, tmp_path: Path) -> None:
    data = scifact_slice(scifact_dir, tmp_path / "beir")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node", "2", "-m", "hardneg.service.distributed", "mine"]
    command += ["--data", str(data), "--split", "test", "--output", str(tmp_path / "two")]
    command += ["--num-negatives", "5", "--index", "flat"]
    env = os.environ | {"OMP_NUM_THREADS": "1", "HARDNEG_HOME": str(tmp_path / "home-two")}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "assembled 2 shards" in done.stderr

    request = MineSpec(split="test", method="dense", filters=FilterConfig(num_negatives=5))
    run_mining(
        request, str(data), PipelineContext(Settings(home=tmp_path / "home-one"), tmp_path / "one")
    )

    two, two_meta = embeddings_of(tmp_path / "home-two")
    one, _one_meta = embeddings_of(tmp_path / "home-one")
    assert two.shape == one.shape == (N_DOCS, 384)
    np.testing.assert_allclose(two, one, atol=2e-5)  # same rows in the same order
    assert two_meta["shards"] == 2 and two_meta["rows"] == N_DOCS
    assert not list((tmp_path / "home-two" / "embeddings").rglob(".*part*"))  # parts cleaned up

    mined_two = list(read_mined(tmp_path / "two" / "mined.jsonl"))
    mined_one = list(read_mined(tmp_path / "one" / "mined.jsonl"))
    assert len(mined_one) == N_QUERIES
    assert [(m.query_id, m.negative_ids) for m in mined_two] == [
        (m.query_id, m.negative_ids) for m in mined_one
    ]
    for a, b in zip(mined_two, mined_one, strict=True):
        np.testing.assert_allclose(a.negative_scores, b.negative_scores, atol=2e-5)
        np.testing.assert_allclose(a.positive_scores, b.positive_scores, atol=2e-5)


def test_shards_split_rows_contiguously_and_a_world_of_one_is_the_local_call(
    tmp_path: Path,
) -> None:
    for world in (1, 2, 3, 7):
        bounds = [Shards(rank, world).bounds(10) for rank in range(world)]
        assert bounds[0][0] == 0 and bounds[-1][1] == 10
        assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
        assert max(b - a for a, b in bounds) - min(b - a for a, b in bounds) <= 1
    alone = Shards.current()
    assert not alone.distributed and alone.is_main
    rows = np.arange(6).reshape(3, 2)
    assert alone.gather_rows(rows) is rows and alone.gather_objects("x") == ["x"]
    cache = DiskCache(tmp_path / "cache")
    assert shared_cache(cache, alone) is cache  # one process: the cache itself
    wrapped = MainRankCache(cache, alone)
    wrapped.set("k:1", b"v")
    assert wrapped.get("k:1") == b"v" == cache.get("k:1")
