"""Ranking losses for dense retrievers and rerankers.

All functions take embeddings (or logits) already computed, so they are easy to check by hand
and to run on embeddings gathered from several processes. Scores are ``scale * q · d``; for
cosine models the embeddings arrive unit-normalised, so ``scale`` is an inverse temperature.
Every loss computes in float32, also inside a mixed-precision (autocast) region.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec

import torch
from torch.nn import functional

P = ParamSpec("P")


def full_precision(loss: Callable[P, torch.Tensor]) -> Callable[P, torch.Tensor]:
    """``loss`` with autocast off: autocast runs a matrix product in bf16 or fp16 whatever its
    inputs' dtype (``.float()`` does not stop it), and a bf16 cosine (8 mantissa bits, steps of
    ~0.004 near 1) times an inverse temperature of 20 moves a logit by ~0.08."""

    @functools.wraps(loss)
    def in_fp32(*args: P.args, **kwargs: P.kwargs) -> torch.Tensor:
        first = args[0] if args else next(iter(kwargs.values()))
        device = first.device.type if isinstance(first, torch.Tensor) else "cpu"
        with torch.autocast(device_type=device, enabled=False):
            return loss(*args, **kwargs)

    return in_fp32


def _normalizer(count: torch.Tensor, denominator: float | torch.Tensor | None) -> torch.Tensor:
    if denominator is None:
        return count.clamp(min=1)
    return torch.as_tensor(denominator, dtype=count.dtype, device=count.device).clamp(min=1)


@full_precision
def star_loss(
    query_emb: torch.Tensor,
    doc_emb: torch.Tensor,
    positive_index: torch.Tensor,
    negative_mask: torch.Tensor,
    scale: float = 1.0,
    denominator: float | torch.Tensor | None = None,
) -> torch.Tensor:
    """STAR's pairwise loss (Zhan et al., "Optimizing Dense Retrieval Model Training with Hard
    Negatives", SIGIR 2021, eq. 6-7): every query against every document of the batch, i.e. the
    other queries' positives (random negatives) and all static hard negatives.

        L = mean over valid (q, d-) pairs of  log(1 + exp(s(q, d-) - s(q, d+)))

    Args:
        query_emb: (B, dim) the queries this process scores.
        doc_emb: (M, dim) every document of the (gathered) batch.
        positive_index: (B,) column of each query's positive in ``doc_emb``.
        negative_mask: (B, M) True where the document is a usable negative for the query;
            qrels-relevant documents and padding are False.
        scale: multiplies every score (inverse temperature for cosine embeddings).
        denominator: number of valid pairs to average over (default: ``negative_mask.sum()``);
            distributed runs pass the global count so the ranks' gradients add up exactly.
    """
    scores = scale * query_emb.float() @ doc_emb.float().T  # (B, M)
    positive = scores.gather(1, positive_index.view(-1, 1))  # (B, 1)
    pair_losses = functional.softplus(scores - positive)  # (B, M) log(1 + e^(s- - s+))
    mask = negative_mask.to(pair_losses.dtype)  # (B, M)
    total = (pair_losses * mask).sum()  # ()
    return total / _normalizer(mask.sum(), denominator)


@full_precision
def mnrl_loss(
    query_emb: torch.Tensor,
    doc_emb: torch.Tensor,
    positive_index: torch.Tensor,
    candidate_mask: torch.Tensor | None = None,
    scale: float = 20.0,
) -> torch.Tensor:
    """sentence-transformers' MultipleNegativesRankingLoss (Henderson et al., 2017, "Efficient
    Natural Language Response Suggestion"): softmax cross-entropy of each query over every
    document of the batch (in-batch positives + mined negatives), cosine scores times ``scale``.

    Args:
        query_emb: (B, dim) queries.
        doc_emb: (M, dim) candidate documents, each query's positive among them.
        positive_index: (B,) column of each query's positive.
        candidate_mask: (B, M) False for padding slots (never candidates); None: all valid.
    """
    queries = functional.normalize(query_emb.float(), dim=-1)  # (B, dim)
    docs = functional.normalize(doc_emb.float(), dim=-1)  # (M, dim)
    scores = scale * queries @ docs.T  # (B, M)
    if candidate_mask is not None:
        keep = candidate_mask.clone()  # (B, M)
        keep[torch.arange(len(keep)), positive_index] = True
        scores = scores.masked_fill(~keep, float("-inf"))  # (B, M)
    return functional.cross_entropy(scores, positive_index)


def rank_weights(ranks: torch.Tensor, metric_cut: int | None) -> torch.Tensor:
    """LambdaLoss-style pair weights |1/rank_i - 1/rank_j| (Wang et al., CIKM 2018), with 1/rank
    set to zero beyond ``metric_cut``, as ADORE weights its pairs (Zhan et al., SIGIR 2021).

    Args:
        ranks: (B, K) 1-based rank of each candidate in the retrieved list.
    Returns:
        (B, K, K) weight of pair (i, j).
    """
    gain = 1.0 / ranks.float()  # (B, K)
    if metric_cut is not None:
        gain = gain.masked_fill(ranks > metric_cut, 0.0)  # (B, K)
    return (gain.unsqueeze(2) - gain.unsqueeze(1)).abs()  # (B, K, K)


@full_precision
def adore_loss(
    query_emb: torch.Tensor,
    candidate_emb: torch.Tensor,
    relevant: torch.Tensor,
    ranks: torch.Tensor,
    valid: torch.Tensor,
    metric_cut: int | None = None,
    scale: float = 1.0,
) -> torch.Tensor:
    """ADORE's loss (Zhan et al., SIGIR 2021, section 4.2): for each query, every (relevant i,
    non-relevant j) pair of its dynamically retrieved list (positives appended when missed) costs

        w_ij * log(1 + exp(s(q, d_j) - s(q, d_i))),   w_ij = |1/rank_i - 1/rank_j|

    averaged over the query's pairs, then over the queries that have a pair.

    Args:
        query_emb: (B, dim) queries (the only side with gradients).
        candidate_emb: (B, K, dim) frozen document embeddings of each query's candidates.
        relevant: (B, K) bool, candidate judged relevant.
        ranks: (B, K) 1-based rank of each candidate when it was retrieved.
        valid: (B, K) bool, False for padding.
    """
    scores = scale * torch.einsum("bd,bkd->bk", query_emb.float(), candidate_emb.float())  # (B, K)
    diff = scores.unsqueeze(1) - scores.unsqueeze(2)  # (B, K, K): [b, i, j] = s_j - s_i
    is_pos = relevant & valid  # (B, K)
    is_neg = ~relevant & valid  # (B, K)
    pairs = is_pos.unsqueeze(2) & is_neg.unsqueeze(1)  # (B, K, K) i relevant, j not
    weights = rank_weights(ranks, metric_cut) * pairs  # (B, K, K)
    per_query = (functional.softplus(diff) * weights).sum(dim=(1, 2))  # (B,)
    counts = pairs.sum(dim=(1, 2))  # (B,)
    has_pairs = counts > 0  # (B,)
    if not bool(has_pairs.any()):
        return scores.sum() * 0.0
    return (per_query[has_pairs] / counts[has_pairs]).mean()


@full_precision
def listwise_ce_loss(logits: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Localized contrastive estimation for rerankers (Gao et al., "Rethink Training of BERT
    Rerankers in Multi-Stage Retrieval Pipeline", ECIR 2021): softmax cross-entropy of each
    query's group, positive in column 0, mined negatives after it.

    Args:
        logits: (B, 1 + k) cross-encoder scores.
        valid: (B, 1 + k) bool, False for padding negatives.
    """
    scores = logits.float()  # (B, 1 + k)
    if valid is not None:
        scores = scores.masked_fill(~valid, float("-inf"))  # (B, 1 + k)
    target = torch.zeros(len(scores), dtype=torch.long, device=scores.device)  # (B,)
    return functional.cross_entropy(scores, target)


@full_precision
def margin_mse_loss(
    query_emb: torch.Tensor,
    positive_emb: torch.Tensor,
    negative_emb: torch.Tensor,
    teacher_margin: torch.Tensor,
    valid: torch.Tensor | None = None,
    scale: float = 1.0,
) -> torch.Tensor:
    """MarginMSE (Hofstätter et al., "Improving Efficient Neural Ranking Models with
    Cross-Architecture Knowledge Distillation", 2020), the loss of GPL (Wang et al., "GPL:
    Generative Pseudo Labeling for Unsupervised Domain Adaptation of Dense Retrieval", NAACL
    2022): the student's score margin between a query's positive and each of its negatives is
    regressed onto the teacher's (a cross-encoder's) margin for the same pair,

        L = mean over valid (q, d+, d-) of  ((s(q, d+) - s(q, d-)) - (t(q, d+) - t(q, d-)))^2

    with ``s = scale * q · d``. Soft margins tolerate a false negative: a negative the teacher
    scores like the positive asks for a margin near zero, not for a large one.

    Args:
        query_emb: (B, dim) queries.
        positive_emb: (B, dim) each query's positive.
        negative_emb: (B, k, dim) each query's k negatives.
        teacher_margin: (B, k) teacher score of the positive minus that of each negative.
        valid: (B, k) bool, False for padding negatives; None: all valid.
    """
    queries = query_emb.float()  # (B, dim)
    positive = scale * (queries * positive_emb.float()).sum(-1)  # (B,)
    negative = scale * torch.einsum("bd,bkd->bk", queries, negative_emb.float())  # (B, k)
    student_margin = positive.unsqueeze(1) - negative  # (B, k)
    errors = (student_margin - teacher_margin.float()) ** 2  # (B, k)
    if valid is None:
        return errors.mean()
    mask = valid.to(errors.dtype)  # (B, k)
    return (errors * mask).sum() / mask.sum().clamp(min=1)
