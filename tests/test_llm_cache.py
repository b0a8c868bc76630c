"""LLM output caching: what goes into the key, hits on reruns, nothing stored from a failed call;
and the versioned prompt templates behind the key."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from hardneg.miners.disk_cache import DiskCache
from hardneg.miners.llm.client import ChatMessage, LLMError, LLMRequest, SamplingParams
from hardneg.miners.llm.generation import CHUNK, GenerationJob, generate_all, llm_cache_key
from hardneg.miners.llm.openai_client import OpenAIClient, OpenAIConfig
from hardneg.miners.llm.prompts import (
    DOC2QUERY,
    NEGATIVE,
    PromptTemplate,
    load_template,
    negative_template,
    query_template,
)
from tests.test_llm_fakes import Reply, fake_openai, user_text

REQUEST = LLMRequest((ChatMessage("user", "passage text"),), SamplingParams())


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def client(url: str, model: str = "m1") -> OpenAIClient:
    config = OpenAIConfig(
        base_url=url, model=model, api_key_env=None, max_retries=1, backoff_s=0.01
    )
    return OpenAIClient(config)


def test_cache_key_covers_model_prompt_version_params_and_input() -> None:
    base = llm_cache_key("gguf:a", "doc2query-v1", REQUEST)
    assert base == llm_cache_key("gguf:a", "doc2query-v1", REQUEST)
    assert base.startswith("llm:")
    variants = {
        "model": llm_cache_key("gguf:b", "doc2query-v1", REQUEST),
        "prompt version": llm_cache_key("gguf:a", "doc2query-v2", REQUEST),
        "seed": llm_cache_key(
            "gguf:a", "doc2query-v1", replace(REQUEST, params=SamplingParams(seed=1))
        ),
        "temperature": llm_cache_key(
            "gguf:a", "doc2query-v1", replace(REQUEST, params=SamplingParams(temperature=0.1))
        ),
        "max tokens": llm_cache_key(
            "gguf:a", "doc2query-v1", replace(REQUEST, params=SamplingParams(max_tokens=9))
        ),
        "stop": llm_cache_key(
            "gguf:a", "doc2query-v1", replace(REQUEST, params=SamplingParams(stop=("\n",)))
        ),
        "input": llm_cache_key(
            "gguf:a", "doc2query-v1", LLMRequest((ChatMessage("user", "other text"),))
        ),
        "role": llm_cache_key(
            "gguf:a", "doc2query-v1", LLMRequest((ChatMessage("system", "passage text"),))
        ),
    }
    assert base not in variants.values()
    assert len(set(variants.values())) == len(variants)


def jobs(template: PromptTemplate = DOC2QUERY, seed: int = 0) -> list[GenerationJob]:
    params = SamplingParams(max_tokens=8, seed=seed)
    return [
        GenerationJob(template, {"passage": text, "title": ""}, params)
        for text in ("wolves hunt", "plants grow")
    ]


def echo(payload: dict[str, object]) -> Reply:
    return Reply(content=f"echo {user_text(payload)[-20:]}")


def test_reruns_hit_the_cache_and_changes_miss_it(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path)
    with fake_openai(echo) as server:
        with client(server.url) as llm:
            first = generate_all(llm, jobs(), cache)
            second = generate_all(llm, jobs(), cache)
            new_seed = generate_all(llm, jobs(seed=3), cache)
            bumped = replace(DOC2QUERY, version="doc2query-v99")
            new_prompt = generate_all(llm, jobs(bumped), cache)
        with client(server.url, model="m2") as other_model:
            new_model = generate_all(other_model, jobs(), cache)
    assert (first.stats.generated, first.stats.cached) == (2, 0)
    assert (second.stats.generated, second.stats.cached) == (0, 2)
    assert second.outputs == first.outputs
    assert all(isinstance(o, str) and o.startswith("echo") for o in first.outputs)
    for batch in (new_seed, new_prompt, new_model):
        assert (batch.stats.generated, batch.stats.cached) == (2, 0)
    assert len(server.requests) == 8
    assert len(files_under(tmp_path)) == 8


def test_a_failed_call_caches_nothing(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path)
    with fake_openai([Reply(500, raw=b"down")]) as server, client(server.url) as llm:
        batch = generate_all(llm, jobs(), cache)
    assert all(isinstance(o, LLMError) for o in batch.outputs)
    assert (batch.stats.failed, batch.stats.generated) == (2, 0)
    assert files_under(tmp_path) == []
    with fake_openai(echo) as server, client(server.url) as llm:  # the service is back
        retried = generate_all(llm, jobs(), cache)
    assert (retried.stats.generated, retried.stats.cached) == (2, 0)
    assert len(files_under(tmp_path)) == 2


def test_partial_failure_caches_only_the_successes(tmp_path: Path) -> None:
    def half(payload: dict[str, object]) -> Reply:
        return Reply(400, raw=b"no") if "plants" in user_text(payload) else echo(payload)

    cache = DiskCache(tmp_path)
    with fake_openai(half) as server, client(server.url) as llm:
        batch = generate_all(llm, jobs(), cache)
    assert isinstance(batch.outputs[0], str) and isinstance(batch.outputs[1], LLMError)
    assert len(files_under(tmp_path)) == 1


def test_a_corrupt_cache_entry_is_regenerated(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path)
    with fake_openai(echo) as server, client(server.url) as llm:
        generate_all(llm, jobs(), cache)
        for path in files_under(tmp_path):
            path.write_bytes(b"\x00garbage")
        again = generate_all(llm, jobs(), cache)
    assert (again.stats.generated, again.stats.cached) == (2, 0)
    assert all(isinstance(o, str) and o.startswith("echo") for o in again.outputs)


def test_templates_render_and_check_their_fields() -> None:
    messages = DOC2QUERY.render({"passage": "Wolves {hunt} in $packs.", "title": "Wolves"})
    assert messages[0].role == "system" and messages[-1].role == "user"
    assert "Wolves {hunt} in $packs." in messages[-1].content
    assert DOC2QUERY.fields == {"passage"}
    assert NEGATIVE.fields == {"query", "positive"}
    with pytest.raises(KeyError):
        NEGATIVE.render({"query": "q"})
    with pytest.raises(ValueError, match="must use"):
        PromptTemplate("x", "x-1", user="no fields").check_fields(
            frozenset({"passage"}), frozenset({"passage"})
        )
    with pytest.raises(ValueError, match="unknown fields"):
        PromptTemplate("x", "x-1", user="$passage $oops").check_fields(
            frozenset({"passage"}), frozenset({"passage"})
        )
    with pytest.raises(ValueError, match="version"):
        PromptTemplate("x", " ", user="$passage")


def test_templates_load_from_toml_files(tmp_path: Path) -> None:
    good = tmp_path / "mine.toml"
    good.write_text(
        'version = "mine-3"\nsystem = "Be terse."\n'
        'user = """Text: $passage\nA query {json ok}:"""\n'
    )
    template = query_template(good)
    assert (template.name, template.version, template.system) == ("mine", "mine-3", "Be terse.")
    assert template.render({"passage": "P"})[-1].content == "Text: P\nA query {json ok}:"
    bad_cases = {
        "no_version.toml": ('user = "$passage"\n', "'version' must be a string"),
        "extra.toml": ('version = "1"\nuser = "$passage"\ncolour = "red"\n', "unknown keys"),
        "broken.toml": ('version = "1\n', "not valid TOML"),
        "wrong_fields.toml": ('version = "1"\nuser = "$query"\n', "unknown fields"),
    }
    for name, (text, message) in bad_cases.items():
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(ValueError, match=message) as error:
            query_template(path)
        assert name in str(error.value) or message == "unknown fields"
    with pytest.raises(FileNotFoundError, match="prompt file not found"):
        load_template(tmp_path / "absent.toml")
    negative = tmp_path / "neg.toml"
    negative.write_text('version = "n-2"\nuser = "Off-topic text for: $query"\n')
    assert negative_template(negative).fields == {"query"}


def test_a_run_stopped_midway_keeps_the_chunks_it_finished(tmp_path: Path) -> None:
    many = [
        GenerationJob(
            DOC2QUERY, {"passage": f"passage number {i}", "title": ""}, SamplingParams(max_tokens=8)
        )
        for i in range(CHUNK + 8)
    ]

    def stop_after_the_first_chunk(done: int, total: int, stage: str) -> None:
        if done > CHUNK:  # e.g. a cancelled job: its progress callback raises
            raise RuntimeError("cancelled")

    cache = DiskCache(tmp_path)
    with fake_openai(echo) as server, client(server.url) as llm:
        with pytest.raises(RuntimeError, match="cancelled"):
            generate_all(llm, many, cache, stop_after_the_first_chunk)
        assert len(files_under(tmp_path)) == CHUNK
        resumed = generate_all(llm, many, cache)
    assert (resumed.stats.cached, resumed.stats.generated) == (CHUNK, 8)
