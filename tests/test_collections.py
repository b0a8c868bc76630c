"""bench.collections: SMART-format test collections converted to BEIR folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.collections import read_smart, strip_repeated_title, write_beir
from hardneg.core.beir import DataError, load_split

CRAN_DOCS = """.I 1
.T
flow past a flat plate .
.A
someone
.B
j. ae. 1958
.W
flow past a flat plate .
  the boundary layer on a flat
plate was measured .
.I 2
.T
.A
.B
.W
.I 3
.T
wings in a slipstream .
.W
a study of lift .
"""

CRAN_QUERIES = """.I 001
.W
what is the boundary layer
on a flat plate .
.I 004
.W
how is lift measured .
"""

# query ordinals 1 and 2; doc 2 is empty (dropped with its judgment); -1 lines are not codes
CRAN_QRELS = "1 1 1\n1 2 2\n1 3 -1\n2 3 4\n2 1 3\n"

CISI_DOCS = """.I 1
.T
Dewey Decimal Classification
.A
Comaromi, J.P.
.W
   The present study is a history of the DEWEY Decimal
Classification.
.X
1	5	1
.I 2
.T
Use Made of Technical Libraries
.W
A survey of libraries.
.X
2	2	2
"""

CISI_QUERIES = """.I 1
.W
What problems are there in making up descriptive titles?
.I 2
.T
A bibliographic query
.A
Someone
.W
How are libraries used?
.B
1970
"""

CISI_QRELS = "     1     2\t0\t0.000000\n     2     2\t0\t0.000000\n     2     1\t0\t0.000000\n"


def _write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def test_cranfield_converts_to_a_beir_test_split(tmp_path: Path) -> None:
    raw = _write(
        tmp_path / "raw",
        {"cran.all.1400": CRAN_DOCS, "cran.qry": CRAN_QUERIES, "cranqrel": CRAN_QRELS},
    )
    summary = write_beir("cranfield", raw, tmp_path / "cranfield")
    split = load_split(tmp_path / "cranfield", "test")
    assert split.corpus.ids == ("1", "3")  # the empty document 2 is dropped
    assert split.corpus.document(0).title == "flow past a flat plate ."
    # the repeated title is gone from the text
    assert split.corpus.document(0).text == "the boundary layer on a flat plate was measured ."
    # ordinals, not the gappy .I numbers, are the query ids (the qrels number them so)
    assert split.queries == {
        "1": "what is the boundary layer on a flat plate .",
        "2": "how is lift measured .",
    }
    # grade = 5 - Cleverdon code; the judgment of the dropped document and the -1 line are gone
    assert split.qrels == {"1": {"1": 4}, "2": {"3": 1, "1": 2}}
    assert summary["notes"] == {
        "empty_documents_dropped": 1,
        "code_minus_one_dropped": 1,
        "judgments_on_dropped_documents": 1,
    }
    assert summary["documents"] == 2 and summary["judged_queries"] == 2


def test_cisi_converts_with_binary_grades(tmp_path: Path) -> None:
    raw = _write(
        tmp_path / "raw", {"CISI.ALL": CISI_DOCS, "CISI.QRY": CISI_QUERIES, "CISI.REL": CISI_QRELS}
    )
    write_beir("cisi", raw, tmp_path / "cisi")
    split = load_split(tmp_path / "cisi", "test")
    assert split.corpus.document(0).text == (
        "The present study is a history of the DEWEY Decimal Classification."
    )
    assert split.queries["2"] == "How are libraries used?"  # the .W text only
    assert split.qrels == {"1": {"2": 1}, "2": {"2": 1, "1": 1}}


def test_bad_input_names_the_file_and_line(tmp_path: Path) -> None:
    raw = _write(
        tmp_path / "raw",
        {"cran.all.1400": CRAN_DOCS, "cran.qry": CRAN_QUERIES, "cranqrel": "1 1 1\n1 3 7\n"},
    )
    with pytest.raises(DataError, match=r"cranqrel:2: relevance code '7'"):
        write_beir("cranfield", raw, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing half-written
    (raw / "cran.qry").write_text("stray text\n.I 1\n.W\nq\n")
    with pytest.raises(DataError, match=r"cran.qry:1: text before the first '.I'"):
        list(read_smart(raw / "cran.qry"))


def test_strip_repeated_title_only_strips_a_prefix() -> None:
    assert strip_repeated_title("Wing Flow .", "wing flow . the rest") == "the rest"
    assert strip_repeated_title("wing flow", "a wing flow study") == "a wing flow study"
    assert strip_repeated_title("", "text") == "text"


RAW = Path("/work/data/raw")


@pytest.mark.skipif(not (RAW / "cranfield" / "cranqrel").is_file(), reason="raw files absent")
def test_the_real_collections_have_their_published_sizes(tmp_path: Path) -> None:
    cran = write_beir("cranfield", RAW / "cranfield", tmp_path / "cranfield")
    assert (cran["documents"], cran["queries"], cran["judged_queries"]) == (1398, 225, 225)
    cisi = write_beir("cisi", RAW / "cisi", tmp_path / "cisi")
    assert (cisi["documents"], cisi["queries"], cisi["judged_queries"]) == (1460, 112, 76)
