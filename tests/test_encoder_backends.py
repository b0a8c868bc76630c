"""Encoder backends: the packaged all-MiniLM-L6-v2 really exported to ONNX (fp32, int8) and run
by ONNX Runtime and OpenVINO, or run by torch under bf16 autocast, against the same model run by
torch in fp32."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError
from sentence_transformers import CrossEncoder, SentenceTransformer

from hardneg.core.backends import (
    CPU_DEFAULT,
    export_folder,
    model_backend,
    resolve_backend,
    to_backend,
)
from hardneg.core.beir import Corpus, Document, load_split
from hardneg.core.embeddings import EmbeddingKey
from hardneg.core.encoders import encode_texts, load_encoder, model_fingerprint, resolve_model
from hardneg.core.workspace import Workspace
from hardneg.miners.dense import mine_dense
from hardneg.miners.job import MiningJob
from hardneg.miners.spec import MineSpec
from hardneg.service.settings import Settings

TEXTS = [
    "Cats are small domesticated carnivorous mammals.",
    "Grey wolves hunt in packs across the northern forests.",
    "Plants turn sunlight, water and CO2 into sugar.",
    "Magma erupts through vents in the crust of the earth.",
    "which animals descend from wolves",
]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    return Workspace(tmp_path_factory.mktemp("home"))


@pytest.fixture(scope="module")
def torch_model() -> SentenceTransformer:
    return load_encoder(device="cpu")


@pytest.fixture(scope="module")
def int8_model(workspace: Workspace) -> SentenceTransformer:
    return load_encoder(device="cpu", backend="onnx-int8", exports=workspace.encoder_exports)


def _corpus() -> Corpus:
    return Corpus.from_documents([Document(f"d{i}", "", t) for i, t in enumerate(TEXTS)])


def test_int8_embeddings_are_close_to_torch(
    torch_model: SentenceTransformer, int8_model: SentenceTransformer
) -> None:
    reference = encode_texts(torch_model, TEXTS)
    vectors = encode_texts(int8_model, TEXTS)
    assert vectors.shape == reference.shape and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cosine = np.sum(vectors * reference, axis=1)
    assert cosine.min() > 0.98
    assert not np.allclose(vectors, reference, atol=1e-4)  # int8 really ran: it is not fp32
    assert model_backend(int8_model) == "onnx-int8"


def test_bf16_embeddings_are_near_fp32_and_stored_apart(
    workspace: Workspace, torch_model: SentenceTransformer
) -> None:
    """bf16 runs wherever torch does (emulated without native bf16: slow, still correct)."""
    model = load_encoder(device="cpu", backend="torch-bf16")  # no export folder needed
    assert model_backend(model) == "torch-bf16"
    vectors, reference = encode_texts(model, TEXTS), encode_texts(torch_model, TEXTS)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cosine = np.sum(vectors * reference, axis=1)
    assert cosine.min() > 0.999  # closer to fp32 than int8 (> 0.98 above)
    assert not np.allclose(vectors, reference, atol=1e-5)  # bf16 really ran
    key, fp32_key = (EmbeddingKey.for_model(_corpus(), m) for m in (model, torch_model))
    assert key.backend == "torch-bf16" and key.stem != fp32_key.stem


@pytest.mark.parametrize("backend", ["onnx", "openvino", "openvino-int8"])
def test_other_backends_match_torch(
    backend: str, workspace: Workspace, torch_model: SentenceTransformer
) -> None:
    model = load_encoder(device="cpu", backend=backend, exports=workspace.encoder_exports)  # type: ignore[arg-type]
    cosine = np.sum(encode_texts(model, TEXTS) * encode_texts(torch_model, TEXTS), axis=1)
    assert cosine.min() > (0.98 if backend.endswith("int8") else 0.9999)


def test_cache_keys_differ_by_backend(
    workspace: Workspace, torch_model: SentenceTransformer, int8_model: SentenceTransformer
) -> None:
    fp32 = load_encoder(device="cpu", backend="onnx", exports=workspace.encoder_exports)
    keys = [EmbeddingKey.for_model(_corpus(), m) for m in (torch_model, fp32, int8_model)]
    assert [k.backend for k in keys] == ["torch", "onnx", "onnx-int8"]
    assert len({k.stem for k in keys}) == 3
    assert len({k.model_fingerprint for k in keys}) == 3
    store = workspace.embeddings
    for model in (torch_model, int8_model):
        store.encode_corpus(model, _corpus())
    assert store.path(keys[0]).is_file() and store.path(keys[2]).is_file()
    assert store.path(keys[1]) != store.path(keys[2])
    assert not np.array_equal(store.load(keys[0]), store.load(keys[2]))


def test_second_load_reuses_the_export(
    workspace: Workspace,
    torch_model: SentenceTransformer,
    int8_model: SentenceTransformer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    source = model_fingerprint(torch_model)
    graph = export_folder(workspace.encoder_exports, source, "onnx-int8") / "model.onnx"
    before = graph.stat()
    with caplog.at_level(logging.INFO, logger="hardneg.core.backends"):
        again = load_encoder(device="cpu", backend="onnx-int8", exports=workspace.encoder_exports)
    assert not [r for r in caplog.records if "export" in r.message or "quantiz" in r.message]
    after = graph.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert model_fingerprint(again) == model_fingerprint(int8_model) != source
    leftovers = [p.name for p in workspace.encoder_exports.iterdir() if p.name.startswith(".")]
    assert leftovers == []  # exports are renamed into place: no temporary folder is left


def test_bad_backend_names_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match=r"backend: unknown encoder backend 'onnx-int4'"):
        load_encoder(device="cpu", backend="onnx-int4", exports=Path("unused"))  # type: ignore[arg-type]
    monkeypatch.setenv("HARDNEG_ENCODER_BACKEND", "onnx-int4")
    with pytest.raises(ValidationError, match="encoder_backend"):
        Settings()
    monkeypatch.setenv("HARDNEG_ENCODER_BACKEND", "onnx-int8")
    assert Settings().encoder_backend == "onnx-int8"
    monkeypatch.delenv("HARDNEG_ENCODER_BACKEND")
    assert Settings().encoder_backend == "auto"  # the service's default


def test_auto_and_device_rules() -> None:
    assert resolve_backend("auto", "cuda") == "torch"
    assert resolve_backend("auto", "cpu") == CPU_DEFAULT == "onnx-int8"  # measured: bench
    with pytest.raises(ValueError, match=r"backend: 'onnx-int8' runs on the CPU"):
        resolve_backend("onnx-int8", "cuda")
    with pytest.raises(ValueError, match="exports"):
        load_encoder(device="cpu", backend="onnx")


def test_dense_miner_runs_the_jobs_backend(
    tiny_beir: Path, workspace: Workspace, int8_model: SentenceTransformer
) -> None:
    split = load_split(tiny_beir, "test")
    job = MiningJob(MineSpec(method="dense"), split, workspace, encoder_backend="onnx-int8")
    run = mine_dense(job)
    assert run.provenance["backend"] == "onnx-int8"
    assert run.provenance["model_fingerprint"] == model_fingerprint(int8_model)


def test_cross_encoder_exports_too(tmp_path: Path) -> None:
    base = CrossEncoder(resolve_model(None), num_labels=1, max_length=64, device="cpu")
    base.save(str(tmp_path / "ce"))
    int8 = CrossEncoder(str(tmp_path / "ce"), device="cpu")
    to_backend(int8, model_fingerprint(int8), "onnx-int8", tmp_path / "exports")
    pairs = [("which animals descend from wolves", text) for text in TEXTS]
    reference = np.asarray(base.predict(pairs, show_progress_bar=False))
    scores = np.asarray(int8.predict(pairs, show_progress_bar=False))
    assert scores.shape == reference.shape == (len(TEXTS),)
    assert np.abs(scores - reference).max() < 0.1 * (np.ptp(reference) + 1e-3) + 0.05
