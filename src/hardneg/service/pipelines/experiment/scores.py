"""How hard is each method's negative set, measured with one ruler.

Each miner scores with its own model (BM25 weights, cosine, cross-encoder logits), so their
scores cannot be compared. Here every query, positive and negative of every method is scored by
the same base bi-encoder (cosine): corpus documents from the cached corpus embeddings, generated
negatives encoded on the spot.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from hardneg.core.backends import BackendChoice
from hardneg.core.beir import find_corpus_file, load_corpus
from hardneg.core.encoders import encode_texts, load_encoder
from hardneg.core.negatives import read_mined
from hardneg.core.workspace import Workspace
from hardneg.service.pipelines.experiment.stages import Distributions


def score_distributions(
    folder: Path,
    mined: Mapping[str, Path],
    model_name: str,
    workspace: Workspace,
    device: str | None = None,
    backend: BackendChoice = "torch",
) -> Distributions:
    """Per method: the base model's cosine of (query, positive) and (query, negative) pairs."""
    corpus = load_corpus(find_corpus_file(folder))
    model = load_encoder(model_name, device, None, backend, workspace.encoder_exports)
    vectors = workspace.embeddings.encode_corpus(model, corpus)  # (N, dim), cached
    methods: dict[str, dict[str, list[float]]] = {}
    for method, path in mined.items():
        rows = list(read_mined(path))
        queries = encode_texts(model, [r.query for r in rows])  # (Q, dim)
        outside = sorted(
            {
                text
                for r in rows
                for d, text in zip(r.negative_ids, r.negatives, strict=True)
                if d not in corpus
            }
        )
        encoded = dict(zip(outside, encode_texts(model, outside), strict=True)) if outside else {}
        positive: list[float] = []
        negative: list[float] = []
        for row, query in zip(rows, queries, strict=True):
            positive.extend(
                float(vectors[corpus.position(d)] @ query) for d in row.positive_ids if d in corpus
            )
            for doc_id, text in zip(row.negative_ids, row.negatives, strict=True):
                vector = vectors[corpus.position(doc_id)] if doc_id in corpus else encoded[text]
                negative.append(float(np.dot(vector, query)))
        methods[method] = {
            "positive": [round(s, 4) for s in positive],
            "negative": [round(s, 4) for s in negative],
        }
    return Distributions(model=model_name, similarity="cosine", methods=methods)
