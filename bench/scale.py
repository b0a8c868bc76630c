"""How hardneg's cost grows with the corpus: 10k, 100k and 1M documents, 10k queries.

    python -m bench.scale [--sizes 10000 100000 1000000] [--queries 10000] [--work DIR]
    python -m bench.scale --sizes 1000000 --stages dense_hnsw --update   # one stage, merged

Per size, five stages, each in its own process (``bench/scale_stages.py``) so that its peak RSS
(``VmHWM`` of that child's own address space, read by it at its end) is its own:

- ``bm25_index``: load the corpus, tokenize, score, save;
- ``bm25_mining``: load corpus, queries and index; top 100 of the 10k queries with their
  positives' scores; the default filters;
- ``dense_flat`` / ``dense_ivf`` / ``dense_hnsw``: build the FAISS index over generated 384-d
  embeddings, search the 10k query vectors for their top 100 (no encoding).

Corpora are SciFact's real sentences recombined (``bench/scale_data.py``). Growth exponents
are least-squares slopes of log(wall) on log(size).
Writes ``bench/results/scale.json`` and ``bench/results/scale.png``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.machine import machine_info
from bench.scale_data import write_corpora, write_embeddings, write_query_embeddings
from bench.scale_stages import STAGES, paths

RESULTS = Path(__file__).parent / "results"
GIB = 2**30
DEFAULT_SIZES = (10_000, 100_000, 1_000_000)


def prepare(work: Path, sizes: list[int], n_queries: int, stages: list[str]) -> dict[str, float]:
    """Write what ``stages`` read, once (not timed as a stage); returns seconds spent.

    The corpora (for the BM25 stages) are written together, their queries depending on the
    largest size; the embeddings are prefix-stable, so each size's matrix is written alone when
    missing, and the query vectors (document ``i``'s plus noise) from any size's."""
    started = time.perf_counter()
    marker = work / f"ready-{'-'.join(map(str, sizes))}-{n_queries}"
    if any(stage.startswith("bm25") for stage in stages) and not marker.is_file():
        folders = {size: paths(work, size)["data"] for size in sizes}
        for folder in folders.values():
            folder.mkdir(parents=True, exist_ok=True)
        write_corpora(folders, n_queries)
        marker.write_text("ok\n")
    if any(stage.startswith("dense") for stage in stages):
        for size in sizes:
            if not paths(work, size)["embeddings"].is_file():
                write_embeddings(paths(work, size)["embeddings"], size)
        where = paths(work, min(sizes))
        if not where["queries"].is_file():
            write_query_embeddings(where["queries"], where["embeddings"], n_queries)
    return {"prepare_s": time.perf_counter() - started}


def run_stage(stage: str, size: int, work: Path, timeout_s: float) -> dict[str, object]:
    """Run one stage in a child process; its wall, disk and peak RSS (or why it has none)."""
    load = os.getloadavg()[0]
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "bench.scale_stages", stage, str(size), str(work)]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, env=env, text=True)
    deadline = time.monotonic() + timeout_s
    while True:
        pid, status = os.waitpid(child.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            child.kill()
            child.wait()
            return {"timed_out": True, "timeout_s": timeout_s, "load_1min": load}
        time.sleep(0.5)
    output = child.stdout.read() if child.stdout else ""
    if os.waitstatus_to_exitcode(status) != 0:
        return {"failed": True, "exit": os.waitstatus_to_exitcode(status), "load_1min": load}
    result: dict[str, object] = json.loads(output.strip().splitlines()[-1])
    # VmHWM of the child's own address space: ru_maxrss would start from the parent's RSS at fork
    result["peak_rss_gib"] = round(int(result["vm_hwm_kib"]) * 1024 / GIB, 3)  # type: ignore[call-overload]
    result["load_1min"] = load
    return result


def recall(work: Path, size: int, kind: str) -> float | None:
    """Share of the exact (flat) top 100 that an approximate index also returns."""
    found = paths(work, size)["found"]
    exact_file, approx_file = found / "flat.npy", found / f"{kind}.npy"
    if not (exact_file.is_file() and approx_file.is_file()):
        return None  # no exact results for this size in the work folder: run dense_flat too
    exact, approx = np.load(exact_file), np.load(approx_file)
    hits = sum(len(np.intersect1d(e, a)) for e, a in zip(exact, approx, strict=True))
    return round(hits / exact.size, 4)


def exponent(sizes: list[int], values: list[float]) -> float | None:
    """Slope of the least-squares line through (log size, log value)."""
    points = [(math.log(s), math.log(v)) for s, v in zip(sizes, values, strict=True) if v > 0]
    if len(points) < 2:
        return None
    x, y = np.asarray(points).T
    return round(float(np.polyfit(x, y, 1)[0]), 3)


def fits(sizes: dict[str, dict[str, dict[str, object]]], field: str) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for stage in STAGES:
        done = [(int(s), r[stage][field]) for s, r in sizes.items() if field in r.get(stage, {})]
        out[stage] = exponent([s for s, _ in done], [float(v) for _, v in done])  # type: ignore[arg-type]
    return out


def plot(sizes: dict[str, dict[str, dict[str, object]]], target: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (wall, rss) = plt.subplots(1, 2, figsize=(11, 4.2))
    for stage in STAGES:
        done = [(int(s), r[stage]) for s, r in sizes.items() if "wall_s" in r.get(stage, {})]
        if not done:
            continue
        x = [s for s, _ in done]
        wall.plot(x, [r["wall_s"] for _, r in done], marker="o", label=stage)
        rss.plot(x, [r["peak_rss_gib"] for _, r in done], marker="o", label=stage)
    for axis, label in ((wall, "wall seconds"), (rss, "peak RSS (GiB)")):
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("documents")
        axis.set_ylabel(label)
        axis.grid(True, which="both", alpha=0.3)
    rss.axhline(4, color="grey", linestyle="--", linewidth=1)
    wall.legend(fontsize=8)
    wall.set_title("wall time, 10k queries")
    rss.set_title("peak RSS of each stage's process")
    figure.tight_layout()
    figure.savefig(target, dpi=110)


def estimate_skipped_hnsw(sizes: dict[str, dict[str, dict[str, object]]]) -> None:
    """A skipped HNSW build's seconds, extrapolated as n log n from the largest one measured."""
    built = [
        (int(s), r["dense_hnsw"]) for s, r in sizes.items() if "build_s" in r.get("dense_hnsw", {})
    ]
    if not built:
        return
    n, measured = max(built, key=lambda pair: pair[0])
    for size, stages in sizes.items():
        hnsw = stages.get("dense_hnsw", {})
        if "skipped" in hnsw or "timed_out" in hnsw:
            factor = int(size) / n * math.log(int(size)) / math.log(n)
            estimate = float(measured["build_s"]) * factor  # type: ignore[arg-type]
            stages["dense_hnsw"]["estimated_build_s"] = round(estimate)
            stages["dense_hnsw"]["estimated_from"] = f"{n:,} documents, n log n"


def merge_run(saved: dict[str, Any], other: dict[str, Any]) -> None:
    """``other``'s stages put into ``saved`` (each replacing that size's stage whole), the run
    recorded in ``merged_runs``; exponents, estimates and RSS fits recomputed."""
    for size, stages in other["sizes"].items():
        saved["sizes"].setdefault(size, {}).update(stages)
    saved["sizes"] = dict(sorted(saved["sizes"].items(), key=lambda item: int(item[0])))
    fields = ("command", "load_average_start", "load_average_end")
    saved.setdefault("merged_runs", []).append({k: other[k] for k in fields if k in other})
    refit(saved)


def refit(report: dict[str, Any]) -> None:
    estimate_skipped_hnsw(report["sizes"])
    report["exponents"] = fits(report["sizes"], "wall_s")
    report["rss_exponents"] = fits(report["sizes"], "peak_rss_gib")


def table(report: dict[str, object]) -> str:
    """The README's table: wall seconds / peak RSS GiB per stage and size, then the exponents."""
    sizes: dict[str, dict[str, dict[str, object]]] = report["sizes"]  # type: ignore[assignment]
    head = "| stage | " + " | ".join(f"{int(s):,} docs" for s in sizes) + " | exponent |"
    lines = [head, "|---" * (len(sizes) + 2) + "|"]
    exponents: dict[str, float | None] = report["exponents"]  # type: ignore[assignment]
    for stage in STAGES:
        cells = []
        for size in sizes.values():
            r = size.get(stage, {})
            cells.append(
                f"{r['wall_s']:.1f} s / {r['peak_rss_gib']:.2f} GiB" if "wall_s" in r else "—"
            )
        lines.append(f"| `{stage}` | " + " | ".join(cells) + f" | {exponents.get(stage)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES))
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--work", type=Path, default=Path("/tmp/hardneg-scale"))
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per stage")
    parser.add_argument("--hnsw-timeout", type=float, default=900, help="seconds, HNSW stage")
    parser.add_argument("--out", type=Path, default=RESULTS / "scale.json")
    parser.add_argument("--stages", nargs="+", choices=list(STAGES), default=list(STAGES))
    parser.add_argument(
        "--hnsw-max-size",
        type=int,
        default=None,
        help="skip HNSW above this size (recorded as skipped: its build would not fit in time)",
    )
    parser.add_argument(
        "--merge", type=Path, nargs="*", default=[], help="with --report-only: results to add"
    )
    parser.add_argument(
        "--report-only", action="store_true", help="redraw the plot and table from --out"
    )
    parser.add_argument(
        "--update",
        action="store_true",
        help="merge this run's stages into the existing --out (the other sizes/stages kept)",
    )
    args = parser.parse_args(argv)
    if args.report_only:
        saved = json.loads(args.out.read_text())
        for extra in args.merge:  # another run's stages (e.g. run side by side), recorded as such
            merge_run(saved, json.loads(extra.read_text()))
        refit(saved)
        write_report(saved, args.out)
        return
    partial = set(args.sizes) != set(DEFAULT_SIZES) or set(args.stages) != set(STAGES)
    if partial and not args.update and args.out.is_file():
        parser.error(f"a run of some sizes or stages would replace {args.out}: pass --update "
                     "to merge it in, or --out elsewhere")  # fmt: skip
    sizes = sorted(args.sizes)
    args.work.mkdir(parents=True, exist_ok=True)
    report: dict[str, object] = {
        "command": "python -m bench.scale " + " ".join(argv or sys.argv[1:]),
        "machine": machine_info(),
        "load_average_start": os.getloadavg(),
        "queries": args.queries,
        "depth": 100,
        "note": (
            "each stage in its own process; peak_rss_gib is that process's VmHWM, which "
            "counts memory-mapped file pages it touched (index arrays, embeddings); dense "
            "stages time index build + search of generated embeddings (no encoding)"
        ),
    }
    report |= prepare(args.work, sizes, args.queries, args.stages)
    # --update: this run goes to a file of its own, then into --out (its other stages kept)
    run_file = args.out.with_name(f".{args.out.stem}-run.json") if args.update else args.out
    results: dict[str, dict[str, dict[str, object]]]
    results = {str(size): {} for size in sizes}
    # the BM25 stages of every size first, then flat + IVF, then HNSW (the slowest build)
    groups = [("bm25_index", "bm25_mining"), ("dense_flat", "dense_ivf"), ("dense_hnsw",)]
    for group, size in ((g, s) for g in groups for s in sizes):
        for stage in (s for s in group if s in args.stages):
            timeout = args.hnsw_timeout if stage == "dense_hnsw" else args.timeout
            if stage == "dense_hnsw" and args.hnsw_max_size and size > args.hnsw_max_size:
                reason = f"skipped: an HNSW build above {args.hnsw_max_size:,} documents"
                result: dict[str, object] = {"skipped": reason + " would not fit in the run"}
            else:
                result = run_stage(stage, size, args.work, timeout)
            if stage in ("dense_ivf", "dense_hnsw") and "wall_s" in result:
                result["recall_vs_flat"] = recall(args.work, size, stage.removeprefix("dense_"))
            results[str(size)][stage] = result
            sys.stderr.write(f"{size} {stage}: {json.dumps(result)}\n")
            report |= {"sizes": results, "exponents": fits(results, "wall_s")}
            report["rss_exponents"] = fits(results, "peak_rss_gib")
            report["load_average_end"] = os.getloadavg()
            run_file.write_text(json.dumps(report, indent=2) + "\n")
    if args.update:
        saved = json.loads(args.out.read_text())
        merge_run(saved, report)
        report = saved
        run_file.unlink()
    write_report(report, args.out)


def write_report(report: dict[str, Any], out: Path) -> None:
    """The JSON, its plot beside it (``.png``) and the README table (on stderr)."""
    out.write_text(json.dumps(report, indent=2) + "\n")
    plot(report["sizes"], out.with_suffix(".png"))
    sys.stderr.write(table(report) + "\n")


if __name__ == "__main__":
    main()
