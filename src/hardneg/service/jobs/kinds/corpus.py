"""The ``corpus`` job kind: make a registered corpus ready.

A BEIR dataset named by the user is found in the data directory or ``data_dirs``, else
downloaded (resumable: a retried attempt continues the ``.part`` file where the lost one
stopped). A server-side folder is used in place. Either way the corpus, queries and qrels are
read and checked, and the corpus record gets its counts, fingerprint and content version.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from hardneg.core.beir import (
    CorpusScan,
    Document,
    available_splits,
    check_qrels,
    find_corpus_file,
    iter_corpus,
    load_qrels,
    load_queries,
    scan_corpus,
)
from hardneg.core.download import download_beir
from hardneg.core.progress import Progress
from hardneg.core.spec import Spec
from hardneg.core.workspace import Workspace
from hardneg.service.jobs.context import JobContext, JobOutcome, require_corpus
from hardneg.service.jobs.corpora import ready_fields
from hardneg.service.jobs.paths import confine
from hardneg.service.settings import Settings

logger = logging.getLogger(__name__)

READ_REPORT_EVERY = 5000  # documents between two progress reports while reading a corpus


class RegisterCorpusSpec(Spec):
    """Corpus registration: a BEIR dataset by name, or a folder on the server. The routes
    ``POST /v1/corpora/beir`` and ``/path`` build it from their bodies, after their checks."""

    source: Literal["beir", "path"]
    name: str | None = Field(None, description="BEIR dataset name (validated by the API)")
    path: str | None = Field(None, description="server-side folder (confined by the API)")
    md5: str | None = Field(None, pattern=r"^[0-9a-f]{32}$", description="expected zip md5")

    @model_validator(mode="after")
    def _named(self) -> RegisterCorpusSpec:
        if self.source == "beir" and not self.name:
            raise ValueError("'name' is required for a BEIR dataset")
        if self.source == "path" and not self.path:
            raise ValueError("'path' is required for a server-side folder")
        return self


def _beir_folder(name: str, md5: str | None, context: JobContext) -> Path:
    datasets = context.workspace.datasets
    for root in (datasets, *context.settings.data_dirs):
        candidate = root.expanduser() / name
        if candidate.is_dir():
            return candidate
    return download_beir(name, datasets, context.settings.beir_base_url, md5, context.progress)


def cleanup(params: RegisterCorpusSpec, settings: Settings) -> None:
    """A cancelled download is not resumed: drop the partial zip (core's ``<name>.zip.part``)."""
    if params.source == "beir" and params.name:
        (Workspace(settings.home).datasets / f"{params.name}.zip.part").unlink(missing_ok=True)


def _reported(documents: Iterator[Document], progress: Progress) -> Iterator[Document]:
    count = 0
    for count, document in enumerate(documents, start=1):
        if count % READ_REPORT_EVERY == 0:
            progress(count, 0, "reading corpus")
        yield document
    progress(count, count, "reading corpus")


def read_folder(
    folder: Path, progress: Progress
) -> tuple[CorpusScan, dict[str, str], dict[str, int]]:
    """Check a BEIR folder: the corpus (streamed: its ids and fingerprint kept, not its texts),
    queries (if any), every qrels split."""
    corpus_file = find_corpus_file(folder)
    corpus = scan_corpus(corpus_file, _reported(iter_corpus(corpus_file), progress))
    queries_file = folder / "queries.jsonl"
    queries = load_queries(queries_file) if queries_file.is_file() else {}
    splits: dict[str, int] = {}
    for split in available_splits(folder):
        qrels_file = folder / "qrels" / f"{split}.tsv"
        qrels = load_qrels(qrels_file)
        check_qrels(qrels_file, qrels, queries, corpus)
        splits[split] = len(qrels)
    return corpus, queries, splits


def run(params: RegisterCorpusSpec, context: JobContext) -> JobOutcome:
    record = require_corpus(context)
    if params.name is not None:  # source "beir" (the spec requires one name or path)
        folder = _beir_folder(params.name, params.md5, context)
    else:
        folder = confine(str(params.path), context.settings.allowed_roots)
    corpus, queries, splits = read_folder(folder, context.progress)
    fields = ready_fields(corpus.fingerprint, len(corpus), len(queries), splits, folder)
    context.corpora.update(
        record.id,
        lambda old: replace(old, folder=str(folder), **fields),  # type: ignore[arg-type]
    )
    stats = {"documents": len(corpus), "queries": len(queries), "splits": splits}
    logger.info("corpus %s ready: %s", record.id, stats)
    return JobOutcome(stats=stats | {"fingerprint": corpus.fingerprint})
