"""Training losses on tiny batches against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hardneg.trainers.adore import dynamic_candidates
from hardneg.trainers.data import PAD_ID, Batch, negative_mask
from hardneg.trainers.losses import (
    adore_loss,
    listwise_ce_loss,
    mnrl_loss,
    rank_weights,
    star_loss,
)


def softplus(x: float) -> float:
    return math.log(1 + math.exp(x))


# two queries, positives p1 p2, one hard negative each (n1 for q1, n2 for q2)
QUERIES = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
DOCS = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.8, 0.6], [0.6, 0.8]])  # p1 p2 n1 n2
POSITIVE = torch.tensor([0, 1])


def test_star_loss_matches_hand_computation() -> None:
    mask = torch.tensor([[False, True, True, True], [True, False, True, True]])
    # q1 scores: p1 1, p2 0, n1 .8, n2 .6 ; q2 scores: p1 0, p2 1, n1 .6, n2 .8
    expected = (
        softplus(0 - 1)
        + softplus(0.8 - 1)
        + softplus(0.6 - 1)
        + softplus(0 - 1)
        + softplus(0.6 - 1)
        + softplus(0.8 - 1)
    ) / 6
    assert star_loss(QUERIES, DOCS, POSITIVE, mask).item() == pytest.approx(expected, rel=1e-6)


def test_star_loss_scale_and_denominator() -> None:
    mask = torch.tensor([[False, True, False, False], [False, False, False, True]])
    expected_sum = softplus(2 * (0 - 1)) + softplus(2 * (0.8 - 1))
    scaled = star_loss(QUERIES, DOCS, POSITIVE, mask, scale=2.0)
    assert scaled.item() == pytest.approx(expected_sum / 2, rel=1e-6)
    global_count = star_loss(QUERIES, DOCS, POSITIVE, mask, scale=2.0, denominator=8)
    assert global_count.item() == pytest.approx(expected_sum / 8, rel=1e-6)


def test_masked_relevant_pairs_neither_count_nor_get_gradient() -> None:
    """n1 is judged relevant to q1 (a false negative): it must leave q1's loss entirely."""
    docs = DOCS.clone().requires_grad_(True)
    batch = Batch(
        query_ids=("q1", "q2"),
        queries=("a", "b"),
        positive_ids=("p1", "p2"),
        positives=("", ""),
        negative_ids=("n1", "n2"),
        negatives=("", ""),
        relevant=(frozenset({"p1", "n1"}), frozenset({"p2"})),
        negatives_per_query=1,
    )
    mask = negative_mask(batch)
    assert mask.tolist() == [[False, True, False, True], [True, False, True, True]]
    loss = star_loss(QUERIES, docs, POSITIVE, mask)
    expected = (
        softplus(0 - 1) + softplus(0.6 - 1) + softplus(0 - 1) + softplus(0.6 - 1) + softplus(-0.2)
    ) / 5
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    assert docs.grad is not None
    # n1 still receives gradient through q2 (for q2 it is a true negative) but not through q1:
    # the gradient w.r.t. n1 is q2's contribution alone, along q2's direction
    q2_only = torch.sigmoid(torch.tensor(0.6 - 1.0)).item() / 5
    assert docs.grad[2].tolist() == pytest.approx([0.0, q2_only], abs=1e-6)


def test_negative_mask_drops_padding_and_shared_positives() -> None:
    batch = Batch(
        query_ids=("q1", "q2"),
        queries=("a", "b"),
        positive_ids=("d1", "d1"),  # two claims citing the same abstract
        positives=("x", "x"),
        negative_ids=("d3", PAD_ID),
        negatives=("y", ""),
        relevant=(frozenset({"d1"}), frozenset({"d1"})),
        negatives_per_query=1,
    )
    assert negative_mask(batch).tolist() == [[False, False, True, False]] * 2


def test_mnrl_loss_matches_cross_entropy_by_hand() -> None:
    scores = 20 * (QUERIES @ DOCS.T)  # unit vectors: cosine = dot
    expected = 0.0
    for i in range(2):
        row = scores[i].tolist()
        expected += -row[i] + math.log(sum(math.exp(s) for s in row))
    loss = mnrl_loss(QUERIES, DOCS, POSITIVE, scale=20.0)
    assert loss.item() == pytest.approx(expected / 2, rel=1e-5)
    # a padding column is no candidate
    keep = torch.tensor([[True, True, True, False], [True, True, True, False]])
    expected_padded = 0.0
    for i in range(2):
        row = scores[i].tolist()[:3]
        expected_padded += -row[i] + math.log(sum(math.exp(s) for s in row))
    padded = mnrl_loss(QUERIES, DOCS, POSITIVE, keep, scale=20.0)
    assert padded.item() == pytest.approx(expected_padded / 2, rel=1e-5)


def test_mnrl_loss_equals_sentence_transformers_loss_class() -> None:
    """Our baseline loss is the sentence-transformers MultipleNegativesRankingLoss recipe."""
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    from hardneg.core.encoders import load_encoder

    model = load_encoder(device="cpu")
    model.eval()
    anchors = ["cats purr", "volcanoes erupt", "plants grow"]
    positives = ["a cat is purring", "lava flows from a volcano", "photosynthesis in plants"]
    negatives = ["dogs bark loudly", "rivers flood valleys", "mushrooms are fungi"]
    features = [model.preprocess(texts) for texts in (anchors, positives, negatives)]
    reference = MultipleNegativesRankingLoss(model)(features, torch.tensor([]))
    with torch.no_grad():
        q, p, n = (model(dict(f))["sentence_embedding"] for f in features)
    ours = mnrl_loss(q, torch.cat([p, n]), torch.arange(3), scale=20.0)
    assert ours.item() == pytest.approx(reference.item(), rel=1e-3, abs=1e-6)


def test_rank_weights_by_hand() -> None:
    ranks = torch.tensor([[1, 2, 3]])
    uncut = rank_weights(ranks, None)[0]
    assert uncut[0].tolist() == pytest.approx([0.0, 0.5, 1 - 1 / 3])
    assert uncut[1, 2].item() == pytest.approx(0.5 - 1 / 3)
    cut = rank_weights(ranks, 2)[0]  # 1/rank is 0 beyond rank 2
    assert cut[0].tolist() == pytest.approx([0.0, 0.5, 1.0])
    assert cut[1, 2].item() == pytest.approx(0.5)
    assert torch.equal(cut, cut.T)


def test_adore_loss_matches_hand_computation() -> None:
    query = torch.tensor([[1.0, 0.0]])
    # candidates ranked 1..4: non-relevant .9, relevant .5, non-relevant .2, padding
    cands = torch.tensor([[[0.9, 0.0], [0.5, 0.0], [0.2, 0.0], [7.0, 0.0]]])
    relevant = torch.tensor([[False, True, False, False]])
    ranks = torch.tensor([[1, 2, 3, 4]])
    valid = torch.tensor([[True, True, True, False]])
    pairs = [(0.5, softplus(0.9 - 0.5)), (0.5 - 1 / 3, softplus(0.2 - 0.5))]
    expected = sum(w * c for w, c in pairs) / 2
    loss = adore_loss(query, cands, relevant, ranks, valid, metric_cut=None)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    cut = adore_loss(query, cands, relevant, ranks, valid, metric_cut=2)
    expected_cut = (0.5 * softplus(0.4) + 0.5 * softplus(-0.3)) / 2
    assert cut.item() == pytest.approx(expected_cut, rel=1e-6)
    scaled = adore_loss(query, cands, relevant, ranks, valid, metric_cut=2, scale=3.0)
    assert scaled.item() == pytest.approx((0.5 * softplus(1.2) + 0.5 * softplus(-0.9)) / 2)


def test_adore_loss_averages_queries_and_skips_those_without_pairs() -> None:
    query = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    cands = torch.tensor([[[0.9, 0.0], [0.5, 0.0]], [[0.3, 0.0], [0.1, 0.0]]])
    relevant = torch.tensor([[False, True], [False, False]])  # second query: no pair
    ranks = torch.tensor([[1, 2], [1, 2]])
    valid = torch.ones(2, 2, dtype=torch.bool)
    loss = adore_loss(query, cands, relevant, ranks, valid)
    assert loss.item() == pytest.approx(0.5 * softplus(0.4), rel=1e-6)


def test_adore_gradient_reaches_only_the_query() -> None:
    query = torch.tensor([[0.6, 0.8]], requires_grad=True)
    cands = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    loss = adore_loss(
        query, cands, torch.tensor([[False, True]]), torch.tensor([[1, 2]]), torch.ones(1, 2) > 0
    )
    loss.backward()
    assert query.grad is not None
    # pushing the relevant doc (0, 1) above the non-relevant (1, 0): grad points along (1, -1)
    assert query.grad[0, 0].item() > 0 > query.grad[0, 1].item()


def test_dynamic_candidates_append_missed_positives() -> None:
    retrieved = np.array([[3, 1, -1], [5, 6, 7]])
    cands = dynamic_candidates(retrieved, [[1, 9], [7]])
    assert cands.positions.tolist() == [[3, 1, -1, 9], [5, 6, 7, -1]]
    assert cands.relevant.tolist() == [[False, True, False, True], [False, False, True, False]]
    assert cands.ranks.tolist() == [[1, 2, 3, 4], [1, 2, 3, 4]]
    assert cands.valid.tolist() == [[True, True, False, True], [True, True, True, False]]


def test_listwise_ce_loss_by_hand() -> None:
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.5, 3.0, -9.0]])
    valid = torch.tensor([[True, True, True], [True, True, False]])
    first = -2.0 + math.log(math.exp(2) + math.exp(1) + 1)
    second = -0.5 + math.log(math.exp(0.5) + math.exp(3))
    loss = listwise_ce_loss(logits, valid)
    assert loss.item() == pytest.approx((first + second) / 2, rel=1e-6)


def test_losses_stay_fp32_inside_bf16_autocast() -> None:
    """Autocast would run the score products in bf16 even on fp32 inputs; the losses turn it off
    (a bf16 cosine times a scale of 20 is off by up to ~0.08), so inside and outside agree."""
    from hardneg.trainers.encoding import autocast

    torch.manual_seed(0)
    queries = functional_normalize(torch.randn(4, 32))
    docs = functional_normalize(torch.randn(8, 32))
    positive = torch.tensor([0, 1, 2, 3])
    mask = torch.ones(4, 8, dtype=torch.bool)
    mask[torch.arange(4), positive] = False
    outside = star_loss(queries, docs, positive, mask, scale=20.0)
    with autocast("cpu", "bf16"):
        assert (queries @ docs.T).dtype == torch.bfloat16  # what autocast does to a bare product
        inside = star_loss(queries, docs, positive, mask, scale=20.0)
        mnrl_inside = mnrl_loss(queries, docs, positive)
    assert inside.dtype == torch.float32
    assert inside.item() == outside.item()
    assert mnrl_inside.item() == mnrl_loss(queries, docs, positive).item()


def functional_normalize(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def test_auto_precision_is_bf16_only_on_a_cpu_with_native_bf16() -> None:
    from hardneg.core.backends import cpu_has_native_bf16
    from hardneg.trainers.encoding import resolve_precision

    assert resolve_precision("auto", "cpu") == ("bf16" if cpu_has_native_bf16() else "fp32")
    assert resolve_precision("auto", "cuda") == "fp32"
    assert resolve_precision("fp32", "cpu") == "fp32"
    assert resolve_precision("bf16", "cuda") == "bf16"
