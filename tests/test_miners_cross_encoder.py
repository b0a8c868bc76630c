"""Cross-encoder mining with a cross-encoder the test builds and trains itself.

No pretrained cross-encoder can be installed offline, so a session fixture initialises a
sentence-transformers CrossEncoder from the local MiniLM (random 1-logit head) and trains it for
a few seeded steps on SciFact train (query, positive) vs (query, BM25 negative) pairs. The miner
then loads it by path, as a user's model would be.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from sentence_transformers import CrossEncoder

from hardneg.core.beir import BeirSplit, load_split
from hardneg.core.bm25 import BM25Index
from hardneg.core.encoders import resolve_model
from hardneg.core.workspace import Workspace
from hardneg.miners.cross_encoder import (
    SOURCE_BM25,
    SOURCE_DENSE,
    cross_encoder_candidates,
    denoised,
    load_cross_encoder,
    mine_cross_encoder,
)
from hardneg.miners.dense import load_job_encoder
from hardneg.miners.disk_cache import DiskCache
from hardneg.miners.filters import FilterConfig
from hardneg.miners.job import MiningJob
from hardneg.miners.spec import MineSpec
from tests.conftest import write_beir

NUM_QUERIES = 12
BM25_DEPTH = 12
TRAIN_NEGATIVES = 2
CE_MAX_LENGTH = 128
DUPLICATE_ID = "near-duplicate"


def _trim(text: str) -> str:
    """Drop the last sentence: a near-duplicate that dedupe cannot catch."""
    sentences = re.split(r"(?<=\.)\s+", text.strip())
    return " ".join(sentences[:-1]) if len(sentences) > 2 else text[: int(len(text) * 0.8)]


@pytest.fixture(scope="session")
def scifact_subset(tmp_path_factory: pytest.TempPathFactory, scifact_dir: Path) -> Path:
    """A few SciFact train queries, their positives and BM25 neighbours, as a BEIR folder.

    The first query's positive also gets a near-duplicate under a new id: an unlabeled positive,
    the false negative cross-encoder denoising exists to catch.
    """
    full = load_split(scifact_dir, "train")
    query_ids = sorted(q for q in full.queries if len(full.qrels[q]) == 1)[:NUM_QUERIES]
    index = BM25Index.build(full.corpus)
    hits = index.search([full.queries[q] for q in query_ids], query_ids, BM25_DEPTH)
    keep = {d for q in query_ids for d in full.qrels[q]} | {
        d for row in range(len(query_ids)) for d, _ in hits.hits(row)
    }
    docs: list[dict[str, object]] = [
        {"_id": d, "title": full.corpus.titles[i], "text": full.corpus.texts[i]}
        for i, d in enumerate(full.corpus.ids)
        if d in keep
    ]
    positive = next(iter(full.qrels[query_ids[0]]))
    source = full.corpus.document(full.corpus.position(positive))
    docs.append({"_id": DUPLICATE_ID, "title": source.title, "text": _trim(source.text)})
    queries: list[dict[str, object]] = [{"_id": q, "text": full.queries[q]} for q in query_ids]
    qrels = [(q, d, g) for q in query_ids for d, g in full.qrels[q].items()]
    return write_beir(tmp_path_factory.mktemp("scifact-subset"), docs, queries, qrels, "train")


def text_of(split: BeirSplit, doc_id: str) -> str:
    return split.corpus.document(split.corpus.position(doc_id)).full_text


def training_pairs(split: BeirSplit) -> list[tuple[str, str, float]]:
    index = BM25Index.build(split.corpus)
    query_ids = list(split.queries)
    hits = index.search([split.queries[q] for q in query_ids], query_ids, BM25_DEPTH)
    pairs: list[tuple[str, str, float]] = []
    for row, query_id in enumerate(query_ids):
        query, judged = split.queries[query_id], split.qrels[query_id]
        for doc_id in judged:
            pairs.append(
                (query, split.corpus.document(split.corpus.position(doc_id)).full_text, 1.0)
            )
        negatives = [d for d, _ in hits.hits(row) if d not in judged and d != DUPLICATE_ID]
        for doc_id in negatives[:TRAIN_NEGATIVES]:
            pairs.append(
                (query, split.corpus.document(split.corpus.position(doc_id)).full_text, 0.0)
            )
    return pairs


FROZEN_LAYERS = 4  # of MiniLM's 6: only the top 2 layers and the new head are trained


def _trainable(name: str) -> bool:
    frozen = ("embeddings.", *(f"encoder.layer.{i}." for i in range(FROZEN_LAYERS)))
    return not any(part in name for part in frozen)


@pytest.fixture(scope="session")
def trained_cross_encoder(tmp_path_factory: pytest.TempPathFactory, scifact_subset: Path) -> Path:
    """MiniLM + a 1-logit head, trained for a few seeded BCE steps (top layers only, ~12 steps
    of 12 pairs: well under a minute on 2 cores); saved to a folder and loaded back by path."""
    torch.manual_seed(0)
    model = CrossEncoder(resolve_model(None), num_labels=1, max_length=CE_MAX_LENGTH, device="cpu")
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(_trainable(name))
    pairs = training_pairs(load_split(scifact_subset, "train"))
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=5e-4)
    generator = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(4):  # epochs
        order = torch.randperm(len(pairs), generator=generator).tolist()
        for start in range(0, len(order), 12):
            batch = [pairs[i] for i in order[start : start + 12]]
            features = model.preprocess([(q, d) for q, d, _ in batch])
            logits = model(features)["scores"].view(-1)  # (batch,)
            labels = torch.tensor([label for _, _, label in batch])  # (batch,)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    model.eval()
    folder = tmp_path_factory.mktemp("cross-encoder")
    model.save_pretrained(str(folder))
    return folder


def test_the_trained_cross_encoder_prefers_positives(
    trained_cross_encoder: Path, scifact_subset: Path
) -> None:
    split = load_split(scifact_subset, "train")
    model = load_cross_encoder(str(trained_cross_encoder), "cpu")
    pairs = training_pairs(split)
    scores = model.predict([(q, d) for q, d, _ in pairs], batch_size=32)
    wins = 0
    queries = sorted({q for q, _, _ in pairs})
    for query in queries:
        mine = [(s, label) for (q, _, label), s in zip(pairs, scores, strict=True) if q == query]
        positive = min(s for s, label in mine if label == 1)
        wins += all(s < positive for s, label in mine if label == 0)
    assert wins >= 0.75 * len(queries), f"positive ranked first for only {wins}/{len(queries)}"


@pytest.fixture(scope="module")
def mining_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ce-mining")


def ce_job(
    scifact_subset: Path, model: Path, root: Path, denoise_margin: float | None = 0.0
) -> MiningJob:
    spec = MineSpec(
        method="cross-encoder",
        filters=FilterConfig(num_negatives=3),
        cross_encoder=str(model),
        cross_encoder_max_length=CE_MAX_LENGTH,
        max_length=128,
        pool_depth=8,
        denoise_margin=denoise_margin,
    )
    return MiningJob(
        spec,
        load_split(scifact_subset, "train"),
        Workspace(root / "home"),
        DiskCache(root / "cache"),
    )


class Stages:
    def __init__(self) -> None:
        self.seen: set[str] = set()

    def __call__(self, done: int, total: int, stage: str) -> None:
        self.seen.add(stage)


def test_negatives_are_chosen_by_cross_encoder_score_below_the_positives(
    scifact_subset: Path, trained_cross_encoder: Path, mining_root: Path
) -> None:
    job = ce_job(scifact_subset, trained_cross_encoder, mining_root)
    stages = Stages()
    run = mine_cross_encoder(job, stages)
    assert {"bm25: searching", "dense: searching", "cross-encoder: scoring"} <= stages.seen
    split = job.split
    assert run.rows and run.report.num_queries == NUM_QUERIES
    model = load_cross_encoder(str(trained_cross_encoder), "cpu", CE_MAX_LENGTH)
    lists, hit = cross_encoder_candidates(job, model, load_job_encoder(job))
    assert hit  # the run above stored them
    for mined in run.rows:
        assert not set(split.qrels[mined.query_id]) & set(mined.negative_ids)
        scores = [s for s in mined.negative_scores if s is not None]
        assert scores == sorted(scores, reverse=True) and len(scores) == len(mined.negatives)
        lowest_positive = min(s for s in mined.positive_scores if s is not None)
        assert max(scores) <= lowest_positive  # denoised: nothing scored like a positive
        # the scores are the cross-encoder's own, recomputed here independently
        recomputed = model.predict([(mined.query, text) for text in mined.negatives])
        assert recomputed == pytest.approx(scores, abs=1e-4)
        # every pool member scored above the weakest chosen negative was chosen or denoised
        row = lists.query_ids.index(mined.query_id)
        weakest = min(scores)
        for position, score in lists.hits(row):
            if score > weakest:
                doc_id = split.corpus.ids[position]
                assert doc_id in mined.negative_ids or score > lowest_positive
    assert lists.sources is not None
    flags = set(lists.sources[lists.positions >= 0].tolist())
    assert {SOURCE_BM25, SOURCE_DENSE} <= flags, "the pool should hold BM25-only and dense-only"
    sources = run.provenance["negative_sources"]
    assert isinstance(sources, dict)
    assert sum(sources.values()) == sum(len(r.negatives) for r in run.rows)


def test_denoising_drops_a_near_duplicate_of_a_positive(
    scifact_subset: Path, trained_cross_encoder: Path, mining_root: Path
) -> None:
    split = load_split(scifact_subset, "train")
    query_id = sorted(split.queries)[0]
    positive = next(iter(split.qrels[query_id]))
    model = load_cross_encoder(str(trained_cross_encoder), "cpu", CE_MAX_LENGTH)
    texts = [split.corpus.document(split.corpus.position(d)).full_text for d in (positive,)]
    texts.append(split.corpus.document(split.corpus.position(DUPLICATE_ID)).full_text)
    positive_score, duplicate_score = model.predict([(split.queries[query_id], t) for t in texts])
    assert abs(positive_score - duplicate_score) < 0.1, (positive_score, duplicate_score)

    raw = mine_cross_encoder(
        ce_job(scifact_subset, trained_cross_encoder, mining_root, denoise_margin=None)
    )
    raw_row = next((r for r in raw.rows if r.query_id == query_id), None)
    assert raw_row is not None, raw.report
    assert DUPLICATE_ID in raw_row.negative_ids  # without denoising it is the hardest negative

    clean = mine_cross_encoder(
        ce_job(scifact_subset, trained_cross_encoder, mining_root, denoise_margin=0.1)
    )
    clean_row = next((r for r in clean.rows if r.query_id == query_id), None)
    assert clean_row is not None, clean.report
    assert DUPLICATE_ID not in clean_row.negative_ids
    assert clean.report.removed["absolute_margin"] >= 1
    assert clean.provenance["cache_hit"] is True  # filters changed, candidates did not


def test_warm_rerun_runs_no_retriever_and_no_cross_encoder(
    scifact_subset: Path, trained_cross_encoder: Path, mining_root: Path
) -> None:
    job = ce_job(scifact_subset, trained_cross_encoder, mining_root)
    first = mine_cross_encoder(job)
    stages = Stages()
    second = mine_cross_encoder(job, stages)
    assert stages.seen == {"filtering"}
    assert second.rows == first.rows and second.provenance["cache_hit"] is True


def test_another_cross_encoder_never_reuses_cached_scores(
    scifact_subset: Path, trained_cross_encoder: Path, mining_root: Path
) -> None:
    job = ce_job(scifact_subset, trained_cross_encoder, mining_root)
    untrained = CrossEncoder(resolve_model(None), num_labels=1, max_length=CE_MAX_LENGTH)
    _, hit = cross_encoder_candidates(job, untrained, load_job_encoder(job))
    assert not hit


def test_denoise_margin_folds_into_the_absolute_margin() -> None:
    assert denoised(FilterConfig(), 0.0).absolute_margin == 0.0
    assert denoised(FilterConfig(absolute_margin=0.25), 0.0).absolute_margin == 0.25
    assert denoised(FilterConfig(absolute_margin=0.25), 0.5).absolute_margin == 0.5
    assert denoised(FilterConfig(), None) == FilterConfig()


def test_the_cross_encoder_method_needs_a_model(scifact_subset: Path, tmp_path: Path) -> None:
    job = MiningJob(MineSpec(), load_split(scifact_subset, "train"), Workspace(tmp_path))
    with pytest.raises(ValueError, match="cross-encoder model"):
        mine_cross_encoder(job)


def test_an_int8_cross_encoder_scores_apart_and_keeps_the_choices(
    scifact_subset: Path, trained_cross_encoder: Path, mining_root: Path
) -> None:
    """The job's encoder backend runs the cross-encoder too: its int8 graph gets its own
    fingerprint (its scores never reuse fp32 ones) and picks nearly the same negatives."""
    from dataclasses import replace

    fp32 = mine_cross_encoder(ce_job(scifact_subset, trained_cross_encoder, mining_root))
    job = replace(
        ce_job(scifact_subset, trained_cross_encoder, mining_root), encoder_backend="onnx-int8"
    )
    int8 = mine_cross_encoder(job)
    assert (
        int8.provenance["cross_encoder_fingerprint"] != fp32.provenance["cross_encoder_fingerprint"]
    )
    assert int8.provenance["cache_hit"] is False
    chosen = {r.query_id: set(r.negative_ids) for r in fp32.rows}
    same = sum(len(chosen[r.query_id] & set(r.negative_ids)) for r in int8.rows)
    assert same >= 0.8 * sum(len(v) for v in chosen.values())
