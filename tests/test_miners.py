"""BM25 and dense mining on a tiny corpus with the real bm25s index, FAISS and MiniLM."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer

from hardneg.core.beir import BeirSplit, load_split
from hardneg.core.bm25 import BM25Index, BM25Params
from hardneg.core.embeddings import EmbeddingKey
from hardneg.core.encoders import load_encoder
from hardneg.core.workspace import Workspace
from hardneg.miners.bm25 import bm25_candidates, mine_bm25
from hardneg.miners.dense import dense_candidates, mine_dense
from hardneg.miners.disk_cache import DiskCache
from hardneg.miners.filters import FilterConfig
from hardneg.miners.job import MiningJob
from hardneg.miners.spec import MineSpec
from tests.conftest import write_beir

DOCS: list[dict[str, object]] = [
    {"_id": "wolf1", "title": "Wolves", "text": "Grey wolves hunt deer and elk in packs."},
    {"_id": "wolf2", "title": "Wolf diet", "text": "Wolves eat deer, elk and moose."},
    {"_id": "wolf3", "title": "Wolf packs", "text": "Wolves live in family packs of six."},
    {"_id": "fox", "title": "Foxes", "text": "Red foxes hunt rabbits and eat berries."},
    {"_id": "dog", "title": "Dogs", "text": "Dogs descend from wolves and eat meat."},
    {"_id": "deer", "title": "Deer", "text": "Deer eat grass, leaves and twigs."},
    {"_id": "elk", "title": "Elk", "text": "Elk are large deer that graze in herds."},
    {"_id": "lynx", "title": "Lynx", "text": "The lynx hunts hares in snowy forests."},
    {"_id": "bear", "title": "Bears", "text": "Bears eat salmon, berries and roots."},
    {"_id": "sun", "title": "Photosynthesis", "text": "Plants turn sunlight into sugar."},
    {"_id": "leaf", "title": "Leaves", "text": "Leaves use sunlight and water to make sugar."},
    {"_id": "root", "title": "Roots", "text": "Roots take up water and minerals."},
    {"_id": "lava", "title": "Volcanoes", "text": "Lava erupts from volcanoes as molten rock."},
    {"_id": "ash", "title": "Ash", "text": "Volcanic ash clouds follow an eruption."},
    {"_id": "quake", "title": "Earthquakes", "text": "Faults slip and the ground shakes."},
    {"_id": "rain", "title": "Rain", "text": "Rain falls when clouds cool and water condenses."},
]
QUERIES: list[dict[str, object]] = [
    {"_id": "q1", "text": "what do wolves eat"},
    {"_id": "q2", "text": "how do plants make sugar from sunlight"},
    {"_id": "q3", "text": "what comes out of a volcano"},
]
# q1 has two positives and a grade-0 judgement (wolf3: judged not relevant, never a negative)
QRELS = [
    ("q1", "wolf1", 1),
    ("q1", "wolf2", 1),
    ("q1", "wolf3", 0),
    ("q2", "sun", 1),
    ("q3", "lava", 1),
]


@pytest.fixture
def animals(tmp_path: Path) -> BeirSplit:
    return load_split(write_beir(tmp_path / "animals", DOCS, QUERIES, QRELS, "train"), "train")


@pytest.fixture(scope="module")
def minilm() -> SentenceTransformer:
    return load_encoder(max_length=128)


class Stages:
    """A real progress callback that remembers which stages ran."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def __call__(self, done: int, total: int, stage: str) -> None:
        self.seen.add(stage)


def job_for(split: BeirSplit, root: Path, **kwargs: object) -> MiningJob:
    device = kwargs.pop("device", None)
    return MiningJob(
        MineSpec.model_validate(kwargs),
        split,
        Workspace(root / "home"),
        DiskCache(root / "cache"),
        device,  # type: ignore[arg-type]
    )


def no_false_negatives(split: BeirSplit, rows: Iterator[object] | tuple[object, ...]) -> None:
    for row in rows:
        judged = set(split.qrels[row.query_id])  # type: ignore[attr-defined]
        assert not judged & set(row.negative_ids), row  # type: ignore[attr-defined]


def test_bm25_positive_scores_match_a_full_bm25_ranking(animals: BeirSplit, tmp_path: Path) -> None:
    index = BM25Index.build(animals.corpus)
    query_ids = list(animals.queries)
    tokens = index.tokenize([animals.queries[q] for q in query_ids])
    full = index.search_tokens(tokens, query_ids, len(animals.corpus))
    for row, _ in enumerate(query_ids):
        everything = dict(full.hits(row))
        positions = list(range(len(animals.corpus)))
        scores = index.score_documents(tokens[row], positions)
        for position, score in zip(positions, scores, strict=True):
            expected = everything.get(animals.corpus.ids[position], 0.0)
            assert score == pytest.approx(expected, rel=1e-6, abs=1e-6)


def test_bm25_scores_positives_outside_the_top_n(animals: BeirSplit, tmp_path: Path) -> None:
    lists, _ = bm25_candidates(animals, Workspace(tmp_path / "home"), depth=1)
    row = lists.query_ids.index("q1")
    # depth is bucketed to 32 but the corpus has 16 docs: every matching doc is listed once
    listed = {animals.corpus.ids[p]: s for p, s in lists.hits(row)}
    for doc_id, score in zip(lists.positive_ids[row], lists.positive_scores[row], strict=True):
        assert score > 0 and score == pytest.approx(listed[doc_id], rel=1e-6)
    assert lists.positive_ids[row] == ("wolf1", "wolf2")


def test_bm25_mining_end_to_end_and_warm_rerun(animals: BeirSplit, tmp_path: Path) -> None:
    config = FilterConfig(num_negatives=2, relative_margin=0.05)
    job = job_for(animals, tmp_path, filters=config)
    cold_stages, warm_stages = Stages(), Stages()
    cold = mine_bm25(job, cold_stages)
    assert "bm25: searching" in cold_stages.seen
    no_false_negatives(animals, cold.rows)
    q1 = next(r for r in cold.rows if r.query_id == "q1")
    assert q1.positive_ids == ("wolf1", "wolf2")
    assert "wolf3" not in q1.negative_ids and q1.negative_ids, q1
    assert cold.report.removed["judged"] >= 1  # wolf3 was retrieved, and kept out
    lowest = min(s for s in q1.positive_scores if s is not None)
    assert all(s is not None and s <= 0.95 * lowest for s in q1.negative_scores)
    assert list(q1.negative_scores) == sorted(q1.negative_scores, reverse=True)  # type: ignore[type-var]

    warm = mine_bm25(job, warm_stages)
    assert warm.rows == cold.rows and warm.provenance["cache_hit"] is True
    assert "bm25: searching" not in warm_stages.seen and "filtering" in warm_stages.seen
    assert isinstance(job.cache, DiskCache) and job.cache.hits == 1

    changed = job_for(animals, tmp_path, filters=config, bm25=BM25Params(k1=0.9))
    assert mine_bm25(changed).provenance["cache_hit"] is False


def test_dense_candidates_are_the_models_cosines(
    animals: BeirSplit, tmp_path: Path, minilm: SentenceTransformer
) -> None:
    lists, hit = dense_candidates(animals, minilm, Workspace(tmp_path / "home"), depth=8)
    assert not hit  # no cache given
    doc_vectors = minilm.encode(animals.corpus.full_texts(), normalize_embeddings=True)
    for row, query_id in enumerate(lists.query_ids):
        query_vector = minilm.encode(animals.queries[query_id], normalize_embeddings=True)
        cosines = doc_vectors @ query_vector  # (n_docs,)
        order = np.argsort(-cosines)[: lists.depth]
        hits = lists.hits(row)
        assert [p for p, _ in hits] == order.tolist()
        np.testing.assert_allclose([s for _, s in hits], cosines[order], atol=1e-5)
        for doc_id, score in zip(lists.positive_ids[row], lists.positive_scores[row], strict=True):
            assert score == pytest.approx(float(cosines[animals.corpus.position(doc_id)]), abs=1e-5)


def test_dense_warm_rerun_skips_encoding_and_search(
    animals: BeirSplit, tmp_path: Path, minilm: SentenceTransformer
) -> None:
    job = job_for(animals, tmp_path, filters=FilterConfig(num_negatives=3), max_length=128)
    cold_stages, warm_stages = Stages(), Stages()
    cold = mine_dense(job, cold_stages)
    assert {"encoding corpus", "dense: encoding queries", "dense: searching"} <= cold_stages.seen
    store = job.workspace.embeddings
    embedding_file = store.path(EmbeddingKey.for_model(animals.corpus, minilm))
    assert embedding_file.is_file()
    stamp = embedding_file.stat().st_mtime_ns
    no_false_negatives(animals, cold.rows)
    assert all(len(r.negative_ids) == 3 for r in cold.rows)

    warm = mine_dense(job, warm_stages)
    assert warm.rows == cold.rows and warm.provenance["cache_hit"] is True
    assert warm_stages.seen == {"filtering"}
    assert embedding_file.stat().st_mtime_ns == stamp
    assert isinstance(job.cache, DiskCache) and job.cache.hits == 1

    # other filters within the same depth bucket reuse the same candidates
    fewer = job_for(animals, tmp_path, filters=FilterConfig(num_negatives=2), max_length=128)
    assert mine_dense(fewer).provenance["cache_hit"] is True


def test_dense_cache_misses_when_the_model_or_corpus_changes(
    animals: BeirSplit, tmp_path: Path, minilm: SentenceTransformer
) -> None:
    workspace, cache = Workspace(tmp_path / "home"), DiskCache(tmp_path / "cache")
    first, _ = dense_candidates(animals, minilm, workspace, 8, cache=cache)
    tuned = load_encoder(max_length=128)
    torch.manual_seed(0)
    with torch.no_grad():  # in-place updates, as an optimizer makes: a "fine-tuned" checkpoint
        for parameter in tuned.parameters():
            parameter.add_(0.02 * torch.randn_like(parameter))
    second, hit = dense_candidates(animals, tuned, workspace, 8, cache=cache)
    assert not hit
    assert np.abs(first.scores - second.scores).max() > 1e-3
    assert len(list((workspace.root / "embeddings").rglob("*.npy"))) == 2

    more_docs: list[dict[str, object]] = [
        *DOCS,
        {"_id": "new", "title": "W", "text": "Wolves eat deer."},
    ]
    folder = write_beir(tmp_path / "bigger", more_docs, QUERIES, QRELS, "train")
    bigger = load_split(folder, "train")
    third, hit = dense_candidates(bigger, minilm, workspace, 8, cache=cache)
    assert not hit and bigger.corpus.position("new") in third.positions
