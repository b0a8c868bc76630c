"""The openai backend against a REAL llama.cpp server (llama_cpp.server) on loopback, serving the
packaged SmolLM2-135M-Instruct GGUF. Generations are kept to a few tokens."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hardneg.core.beir import Corpus, Document
from hardneg.core.bm25 import BM25Index
from hardneg.miners.disk_cache import DiskCache
from hardneg.miners.llm.client import ChatMessage, LLMRequest, SamplingParams
from hardneg.miners.llm.llama_cpp_client import default_model_path
from hardneg.miners.llm.openai_client import OpenAIClient, OpenAIConfig
from hardneg.miners.llm.queries import QueryGenConfig, bm25_retriever, generate_queries
from tests.conftest import TINY_DOCS
from tests.test_llm_fakes import free_port

ALIAS = "smollm2"
QUESTION = (ChatMessage("user", "Name one animal."),)


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(default_model_path()),
        "--model_alias",
        ALIAS,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        "1024",
        "--n_threads",
        "1",
    ]
    with log.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        _wait_until_ready(url, process, log)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"llama.cpp server exited ({process.returncode}):\n{log.read_text()[-3000:]}"
            )
        try:
            if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    pytest.fail(f"llama.cpp server not ready after 180 s:\n{log.read_text()[-3000:]}")


def client_for(url: str, **overrides: object) -> OpenAIClient:
    values: dict[str, object] = {"base_url": url, "model": ALIAS, "api_key_env": None}
    return OpenAIClient(OpenAIConfig(**(values | overrides)))  # type: ignore[arg-type]


def test_real_server_lists_the_model(llama_server: str) -> None:
    models = httpx.get(f"{llama_server}/models", timeout=5).json()
    assert ALIAS in [m["id"] for m in models["data"]]


def test_real_server_completes_and_is_deterministic_per_seed(llama_server: str) -> None:
    params = SamplingParams(max_tokens=8, temperature=0.9, seed=11)
    with client_for(llama_server) as client:
        first = client.complete(QUESTION, params)
        again = client.complete(QUESTION, params)
    assert first.strip(), "the server answered with nothing"
    assert first == again


def test_real_server_batch_through_the_concurrency_limit(llama_server: str) -> None:
    requests = [
        LLMRequest(QUESTION, SamplingParams(max_tokens=6, temperature=0.8, seed=s))
        for s in range(3)
    ]
    with client_for(llama_server, concurrency=2) as client:
        results = client.complete_many(requests)
    assert all(isinstance(r, str) and r.strip() for r in results), results


def test_real_server_query_generation_end_to_end(llama_server: str, tmp_path: Path) -> None:
    """SmolLM2 over HTTP writes queries for two passages; the BM25 round trip judges them."""
    corpus = Corpus.from_documents(
        [Document(str(d["_id"]), str(d["title"]), str(d["text"])) for d in TINY_DOCS]
    )
    retriever = bm25_retriever(BM25Index.build(corpus))
    config = QueryGenConfig(
        per_passage=2, round_trip_k=2, sampling=SamplingParams(max_tokens=24, temperature=0.8)
    )
    cache = DiskCache(tmp_path / "cache")
    with client_for(llama_server) as client:
        result = generate_queries(client, corpus, [1, 4], retriever, config, cache)
        again = generate_queries(client, corpus, [1, 4], retriever, config, cache)
    assert result.report.total == 4 == result.stats.generated
    assert result.report.kept + sum(result.report.dropped.values()) == 4
    for query in result.queries:
        assert query.query_id.startswith("gen:")
        assert set(query.doc_ids) <= {"d2", "d5"} and all(r <= 2 for r in query.ranks)
    assert again.stats.cached == 4 and again.stats.generated == 0
    assert again.queries == result.queries
