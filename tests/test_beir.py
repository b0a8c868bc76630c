from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from hardneg.core.beir import (
    Corpus,
    DataError,
    Document,
    find_corpus_file,
    iter_corpus,
    load_corpus,
    load_qrels,
    load_queries,
    load_split,
)
from tests.conftest import TINY_DOCS, write_beir


def test_tiny_split_loads(tiny_beir: Path) -> None:
    split = load_split(tiny_beir, "test")
    assert split.corpus.ids == ("d1", "d2", "d3", "d4", "d5")
    assert set(split.queries) == {"q1", "q2", "q3"}
    assert split.qrels["q3"] == {"d4": 2}
    assert split.corpus.document(1).full_text == (
        "Dogs Dogs are loyal domesticated descendants of wolves."
    )


def test_split_takes_only_its_own_queries(tmp_path: Path) -> None:
    folder = write_beir(tmp_path / "two", qrels=[("q1", "d2", 1)], split="train")
    write_beir(folder, qrels=[("q2", "d3", 1)], split="test")
    assert set(load_split(folder, "train").queries) == {"q1"}
    assert set(load_split(folder, "test").queries) == {"q2"}


def test_scifact_matches_published_counts(scifact_dir: Path) -> None:
    corpus = load_corpus(find_corpus_file(scifact_dir))
    assert len(corpus) == 5183
    test = load_split(scifact_dir, "test", corpus=corpus)
    train = load_split(scifact_dir, "train", corpus=corpus)
    assert (len(test.queries), sum(map(len, test.qrels.values()))) == (300, 339)
    assert (len(train.queries), sum(map(len, train.qrels.values()))) == (809, 919)


def test_gzip_and_plain_give_the_same_fingerprint(tmp_path: Path, tiny_beir: Path) -> None:
    plain = load_corpus(tiny_beir / "corpus.jsonl")
    gz = tmp_path / "corpus.jsonl.gz"
    with gzip.open(gz, "wt") as handle:
        handle.write((tiny_beir / "corpus.jsonl").read_text())
    assert load_corpus(gz).fingerprint == plain.fingerprint


def test_fingerprint_tracks_content() -> None:
    docs = [Document("a", "t", "x"), Document("b", "", "y")]
    base = Corpus.from_documents(docs).fingerprint
    assert Corpus.from_documents(list(docs)).fingerprint == base
    assert Corpus.from_documents([docs[0], Document("b", "", "y!")]).fingerprint != base
    assert Corpus.from_documents(docs[::-1]).fingerprint != base  # row order matters to embeddings


def _corpus_lines(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "corpus.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    ("lines", "line", "fragment"),
    [
        (['{"_id": "a", "text": "x"}', '{"_id": "b", "text": '], 2, "malformed JSON"),
        (['{"_id": "a", "text": "x"}', '{"text": "no id"}'], 2, "missing '_id'"),
        (['{"_id": "a", "text": "x"}', "", '{"_id": "a", "text": "y"}'], 3, "duplicate '_id' 'a'"),
        (['["not", "an", "object"]'], 1, "expected a JSON object"),
        (['{"_id": "", "text": "x"}'], 1, "non-empty"),
        (['{"_id": "a", "text": 5}'], 1, "'text' must be a string"),
    ],
)
def test_bad_corpus_names_file_and_line(
    tmp_path: Path, lines: list[str], line: int, fragment: str
) -> None:
    path = _corpus_lines(tmp_path, *lines)
    with pytest.raises(DataError) as caught:
        load_corpus(path)
    assert caught.value.line == line
    assert caught.value.path == str(path)
    assert fragment in str(caught.value)
    assert str(caught.value).startswith(f"{path}:{line}: ")


def test_integer_ids_are_read_as_strings(tmp_path: Path) -> None:
    corpus = load_corpus(_corpus_lines(tmp_path, '{"_id": 7, "title": "t", "text": "x"}'))
    assert corpus.ids == ("7",)


def test_empty_corpus(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="corpus is empty"):
        load_corpus(_corpus_lines(tmp_path, "", "  "))


def test_invalid_utf8(tmp_path: Path) -> None:
    path = tmp_path / "corpus.jsonl"
    path.write_bytes(b'{"_id": "a", "text": "ok"}\n{"_id": "b", "text": "\xff\xfe"}\n')
    with pytest.raises(DataError, match="UTF-8"):
        load_corpus(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        load_queries(tmp_path / "queries.jsonl")
    with pytest.raises(DataError, match=r"no corpus\.jsonl"):
        find_corpus_file(tmp_path)


def test_streaming_stops_at_the_bad_line(tmp_path: Path) -> None:
    path = _corpus_lines(tmp_path, '{"_id": "a", "text": "x"}', "{broken")
    stream = iter_corpus(path)
    assert next(stream).id == "a"
    with pytest.raises(DataError):
        next(stream)


def test_queries_duplicate_and_empty(tmp_path: Path) -> None:
    path = tmp_path / "queries.jsonl"
    path.write_text('{"_id": "q", "text": "a"}\n{"_id": "q", "text": "b"}\n')
    with pytest.raises(DataError, match=r":2: duplicate"):
        load_queries(path)
    path.write_text('{"_id": "q", "text": "   "}\n')
    with pytest.raises(DataError, match=r":1: query 'text' is empty"):
        load_queries(path)


@pytest.mark.parametrize(
    ("content", "line", "fragment"),
    [
        ("qid\tdid\tscore\nq1\td1\t1\n", 1, "expected header"),
        ("query-id\tcorpus-id\tscore\nq1\td1\n", 2, "3 tab-separated columns"),
        ("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\thigh\n", 3, "not an integer"),
        ("query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\t0\nq1\td1\t2\n", 4, "judged again"),
    ],
)
def test_bad_qrels(tmp_path: Path, content: str, line: int, fragment: str) -> None:
    path = tmp_path / "test.tsv"
    path.write_text(content)
    with pytest.raises(DataError) as caught:
        load_qrels(path)
    assert caught.value.line == line and fragment in str(caught.value)


def test_a_repeated_identical_qrels_row_is_harmless(tmp_path: Path) -> None:
    path = tmp_path / "test.tsv"
    path.write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td1\t1\n")
    assert load_qrels(path) == {"q1": {"d1": 1}}


def test_qrels_naming_unknown_ids(tmp_path: Path) -> None:
    folder = write_beir(tmp_path / "a", qrels=[("q1", "nope", 1)])
    with pytest.raises(DataError, match="corpus-id 'nope'"):
        load_split(folder, "test")
    folder = write_beir(tmp_path / "b", qrels=[("q9", "d1", 1)])
    with pytest.raises(DataError, match="query-id 'q9'"):
        load_split(folder, "test")


def test_unknown_split_lists_available(tiny_beir: Path) -> None:
    with pytest.raises(DataError, match=r"available: test"):
        load_split(tiny_beir, "dev")


def test_loading_never_writes(tmp_path: Path, tiny_beir: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(tiny_beir, copy)
    before = {p: p.stat().st_mtime_ns for p in copy.rglob("*")}
    load_split(copy, "test")
    assert {p: p.stat().st_mtime_ns for p in copy.rglob("*")} == before
    assert json.loads((copy / "corpus.jsonl").read_text().splitlines()[0]) == TINY_DOCS[0]
