"""What a newcomer feels: how long ``hardneg --help`` takes, and how long a progress bar sits
still while the corpus is encoded. Before -> after, side by side in one run.

    python -m bench.cli_ux --before-src DIR [--docs 1000] [--output bench/results/cli_ux.json]

``--before-src`` is the ``src`` folder of the code to compare with, e.g.
``mkdir -p /tmp/before && git archive ae83118 src | tar -x -C /tmp/before`` then
``--before-src /tmp/before/src``. Each measurement runs in a fresh interpreter whose
``PYTHONPATH`` is one of the two ``src`` folders.

1. help: wall seconds of ``hardneg [COMMAND] --help`` (median of ``--repeats``), and which of
   torch / transformers / faiss / sentence-transformers it imported.
2. gaps: the longest wait between two progress reports while encoding the first ``--docs``
   SciFact documents with the default bi-encoder (``EmbeddingStore.encode_corpus``, defaults).
   Wall seconds (what a user waits on a busy machine) and CPU seconds of the process (the work
   done, all threads). Also the gaps of BM25 indexing of the whole corpus.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCIFACT = Path("/work/shared/data/beir/scifact")
HEAVY = ("torch", "transformers", "faiss", "sentence_transformers")
HELPS = (["--help"], ["evaluate", "--help"], ["mine", "--help"], ["train", "star", "--help"])

_HELP_PROBE = """
import json, sys, time
started = time.perf_counter()
from hardneg.service.cli import app
try:
    app(sys.argv[1:], prog_name="hardneg")
except SystemExit:
    pass
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(%r))
sys.__stderr__.write(json.dumps({"heavy": heavy}) + "\\n")
"""


def _run(src: Path, args: list[str]) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"PYTHONPATH": f"{src}{os.pathsep}{Path.cwd()}", "COLUMNS": "100"}
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=env, timeout=3600, check=True
    )


def help_seconds(src: Path, repeats: int) -> dict[str, object]:
    """Median wall seconds of each help, measured from outside the interpreter."""
    out: dict[str, object] = {}
    for args in HELPS:
        walls = []
        heavy: list[str] = []
        for _ in range(repeats):
            started = time.perf_counter()
            run = _run(src, ["-c", _HELP_PROBE % (HEAVY,), *args])
            walls.append(time.perf_counter() - started)
            heavy = json.loads(run.stderr.strip().splitlines()[-1])["heavy"]
        out["hardneg " + " ".join(args)] = {
            "median_s": round(statistics.median(walls), 3),
            "runs_s": [round(w, 3) for w in walls],
            "heavy_modules_imported": heavy,
        }
    return out


def measure_gaps(docs: int) -> dict[str, object]:
    """(In the child interpreter.) Encode the first ``docs`` documents, timing every report."""
    from hardneg.core.beir import Corpus, find_corpus_file, iter_corpus, load_corpus
    from hardneg.core.bm25 import BM25Index
    from hardneg.core.embeddings import EmbeddingStore
    from hardneg.core.encoders import load_encoder

    path = find_corpus_file(SCIFACT)
    corpus = Corpus.from_documents(list(itertools.islice(iter_corpus(path), docs)))
    model = load_encoder(device="cpu")

    def timed(run: object) -> dict[str, object]:
        stamps: list[tuple[float, float]] = []  # (wall, CPU seconds of the whole process)

        def now() -> tuple[float, float]:
            return time.perf_counter(), time.process_time()

        def report(done: int, total: int, stage: str) -> None:
            stamps.append(now())

        started = now()
        run(report)  # type: ignore[operator]
        ended = now()
        points = [started, *stamps, ended]
        gaps = [(b[0] - a[0], b[1] - a[1]) for a, b in itertools.pairwise(points)]
        return {
            "reports": len(stamps),
            "longest_gap_s": round(max(g[0] for g in gaps), 3),
            "median_gap_s": round(statistics.median(g[0] for g in gaps), 3),
            "longest_gap_cpu_s": round(max(g[1] for g in gaps), 3),
            "total_s": round(ended[0] - started[0], 3),
            "total_cpu_s": round(ended[1] - started[1], 3),
        }

    with tempfile.TemporaryDirectory() as folder:
        store = EmbeddingStore(Path(folder))
        encoding = timed(lambda report: store.encode_corpus(model, corpus, progress=report))
    full = load_corpus(path)
    bm25 = timed(lambda report: BM25Index.build(full, progress=report))
    return {"documents": len(corpus), "encoding": encoding, "bm25_full_corpus": bm25}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--before-src", type=Path, required=False)
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, default=Path("bench/results/cli_ux.json"))
    parser.add_argument("--gaps-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.gaps_child:
        sys.stdout.write(json.dumps(measure_gaps(args.docs)) + "\n")
        return
    from bench.machine import machine_info
    from hardneg.core.atomic import write_text_atomic

    after_src = Path(__file__).resolve().parents[1] / "src"
    sources = {"before": args.before_src, "after": after_src}
    result: dict[str, object] = {
        "command": " ".join(["python -m bench.cli_ux", *sys.argv[1:]]),
        "load_average_at_start": os.getloadavg(),
        "help": {name: help_seconds(src, args.repeats) for name, src in sources.items()},
    }
    gaps = {}
    for name, src in sources.items():
        run = _run(src, ["-m", "bench.cli_ux", "--gaps-child", "--docs", str(args.docs)])
        gaps[name] = json.loads(run.stdout.strip().splitlines()[-1])
    result["progress_gaps"] = gaps
    result["load_average_at_end"] = os.getloadavg()
    result["machine"] = machine_info()
    write_text_atomic(args.output, json.dumps(result, indent=2) + "\n")
    sys.stdout.write(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
