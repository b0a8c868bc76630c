"""Server-rendered HTML of the dashboard: plain pages, inline CSS, one small inline script that
refreshes the live parts; no CDN, nothing fetched from outside the server. Every value from a
record is escaped."""

from __future__ import annotations

import html
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from hardneg.service.jobs.corpora import CorpusRecord
from hardneg.service.jobs.records import JobRecord

IMAGE_SUFFIXES = (".png",)
CSS = """
body{font:14px system-ui,sans-serif;margin:1.5rem;color:#222;max-width:1200px}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:1.6rem}
table{border-collapse:collapse;margin:.4rem 0}
td,th{border-bottom:1px solid #ddd;padding:.25rem .6rem;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.bar{background:#eee;width:140px;height:10px;display:inline-block;vertical-align:middle}
.bar i{background:#2a7;display:block;height:10px}
.state-failed{color:#b22}.state-succeeded{color:#272}
.state-running{color:#15a}img{max-width:100%;border:1px solid #ddd;margin:.3rem 0}
pre{background:#f6f6f6;padding:.5rem;overflow:auto;max-height:16rem}
"""
# Replaces every element marked data-live="<url>" with the HTML fragment at that URL.
SCRIPT = """
async function refresh(){for(const el of document.querySelectorAll('[data-live]')){
try{const r=await fetch(el.dataset.live,{credentials:'same-origin'});
if(r.ok){el.innerHTML=await r.text();}}catch(e){}}}
setInterval(refresh,1500);
"""


def e(value: object) -> str:
    return html.escape(str(value), quote=True)


def page(title: str, body: str) -> str:
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>'
        f"<style>{CSS}</style></head><body><h1>{e(title)}</h1>{body}"
        f"<script>{SCRIPT}</script></body></html>"
    )


def table(header: Sequence[str], rows: Iterable[Sequence[str]], numeric_from: int = 99) -> str:
    head = "".join(f"<th>{e(h)}</th>" for h in header)
    lines = []
    for row in rows:
        cells = "".join(
            f'<td class="n">{c}</td>' if i >= numeric_from else f"<td>{c}</td>"
            for i, c in enumerate(row)
        )
        lines.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(lines)}</tbody></table>"


def progress_bar(record: JobRecord) -> str:
    fraction = (
        1.0
        if record.state == "succeeded"
        else (record.done / record.total if record.total else 0.0)
    )
    percent = f"{100 * fraction:.0f}%"
    return f'<span class="bar" title="{percent}"><i style="width:{percent}"></i></span> {percent}'


def _age(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    seconds = max(0, int(time.time() - timestamp))
    return f"{seconds // 60} min ago" if seconds >= 60 else f"{seconds} s ago"


def jobs_fragment(records: Sequence[JobRecord]) -> str:
    if not records:
        return "<p>No jobs yet.</p>"
    rows = [
        [
            f'<a href="/ui/jobs/{e(r.id)}">{e(r.id)}</a>',
            e(r.kind),
            f'<span class="state-{e(r.state)}">{e(r.state)}</span>',
            e(r.stage),
            progress_bar(r),
            e(_age(r.created_at)),
        ]
        for r in records
    ]
    return table(["job", "kind", "state", "stage", "progress", "created"], rows)


def corpora_table(records: Sequence[CorpusRecord]) -> str:
    if not records:
        return "<p>No corpora yet: upload one with <code>POST /v1/corpora</code>.</p>"
    rows = [
        [
            e(c.name),
            f"<code>{e(c.id)}</code>",
            e(c.state),
            str(c.documents),
            str(c.queries),
            e(", ".join(f"{s} ({n})" for s, n in sorted(c.splits.items())) or "-"),
        ]
        for c in records
    ]
    return table(["name", "id", "state", "documents", "queries", "splits"], rows, numeric_from=3)


def _cell(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, int | float) else "-"


def _pm(summary: object) -> str:
    if isinstance(summary, Mapping) and isinstance(summary.get("mean"), int | float):
        return f"{summary['mean']:.4f} ± {summary.get('std') or 0.0:.4f}"
    return _cell(summary)


def _versus(comparison: object) -> str:
    if not isinstance(comparison, Mapping) or not isinstance(comparison.get("ci95"), list):
        return "-"
    low, high = comparison["ci95"]
    return f"{comparison['delta']:+.4f} [{low:+.4f}, {high:+.4f}]"


def _p(comparison: object) -> str:
    if isinstance(comparison, Mapping) and isinstance(comparison.get("p_holm"), int | float):
        return f"{comparison['p_holm']:.3f}"
    return "-"


def experiment_table(stats: Mapping[str, Any]) -> str:
    """The comparison of a finished experiment job (its stats): mean ± std over seeds on the
    test split, the difference from the control arm with its 95% interval, Holm's p."""
    stage = (stats.get("stages") or {}).get("comparison", "the comparison stage")
    header = ["arm", "nDCG@10", "Δ vs none [95% CI]", "p (Holm)", "Recall@100", "+ ADORE nDCG@10"]
    rows = []
    for name, metrics in (stats.get("baselines") or {}).items():
        rows.append(
            [
                e(name),
                _cell(metrics.get("ndcg@10")),
                "-",
                "-",
                _cell(metrics.get("recall@100")),
                "-",
            ]
        )
    for arm, entry in (stats.get("methods") or {}).items():
        rows.append(
            [
                f"<b>{e(arm)}</b>",
                _pm(entry.get("ndcg@10")),
                _versus(entry.get("vs_control")),
                _p(entry.get("vs_control")),
                _pm(entry.get("recall@100")),
                _pm((entry.get("adore") or {}).get("ndcg@10")),
            ]
        )
    best = stats.get("best_method")
    tied = ", ".join(str(a) for a in stats.get("indistinguishable") or [])
    verdict = (
        f"Best: <b>{e(best)}</b> (significantly better than every other arm)."
        if best
        else f"No arm is significantly better than every other; cannot be told apart: {e(tied)}."
    )
    caption = f"<p>Comparison stage: {e(stage)}. {verdict}</p>"
    return table(header, rows, numeric_from=1) + caption


def read_history(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    entries = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line being written
    return entries


def line_chart(points: Sequence[tuple[float, float]], title: str, width: int = 420) -> str:
    """An inline SVG polyline of (x, y) points with its y range in the title."""
    if not points:
        return f"<p>{e(title)}: no points yet.</p>"
    height, pad = 160, 24
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1e-9
    coords = " ".join(
        f"{pad + (x - x0) / (x1 - x0) * (width - 2 * pad):.1f},"
        f"{height - pad - (y - y0) / (y1 - y0) * (height - 2 * pad):.1f}"
        for x, y in points
    )
    return (
        f"<figure><figcaption>{e(title)} (step {x0:g}–{x1:g}; {y0:.4g}–{y1:.4g})</figcaption>"
        f'<svg width="{width}" height="{height}" role="img" aria-label="{e(title)}">'
        f'<rect width="{width}" height="{height}" fill="#fafafa" stroke="#ddd"/>'
        f'<polyline fill="none" stroke="#15a" stroke-width="2" points="{coords}"/></svg></figure>'
    )


def curves(history: Sequence[Mapping[str, Any]]) -> str:
    loss = [(float(h["step"]), float(h["loss"])) for h in history if h.get("event") == "train"]
    ndcg = [
        (float(h["step"]), float(h["ndcg@10"]))
        for h in history
        if h.get("event") == "eval" and "ndcg@10" in h
    ]
    return line_chart(loss, "training loss") + line_chart(ndcg, "nDCG@10")


def job_detail(record: JobRecord, history: Sequence[Mapping[str, Any]]) -> str:
    """The live part of a job page: state, progress, events, curves, result tables, images."""
    parts = [
        f'<p>Kind <b>{e(record.kind)}</b>, state <span class="state-{e(record.state)}">'
        f"{e(record.state)}</span>, stage <i>{e(record.stage)}</i> {progress_bar(record)} "
        f"({record.done}/{record.total}), attempt {record.attempt}.</p>"
    ]
    if record.error:
        parts.append(f'<p class="state-failed">Error: {e(record.error)}</p>')
    if history:
        parts.append("<h2>Training curves</h2>" + curves(history))
    if record.kind == "experiment" and record.stats.get("methods"):
        parts.append("<h2>Which negatives help?</h2>" + experiment_table(record.stats))
    images = [n for n in record.artifacts if n.endswith(IMAGE_SUFFIXES)]
    for name in images:
        parts.append(
            f'<h2>{e(name)}</h2><img alt="{e(name)}" src="/ui/jobs/{e(record.id)}/'
            f'images/{e(name)}">'
        )
    if record.events:
        parts.append("<h2>Events</h2><pre>" + e("\n".join(record.events[-30:])) + "</pre>")
    return "".join(parts)


def login_page(csrf: str, message: str = "") -> str:
    """The sign-in form; ``csrf`` is the token of the form's cookie (double submit)."""
    note = f'<p class="state-failed">{e(message)}</p>' if message else ""
    form = (
        '<form method="post" action="/login"><label>API key <input type="password" '
        'name="key" autocomplete="current-password"></label>'
        f'<input type="hidden" name="csrf" value="{e(csrf)}"> <button>Open</button></form>'
    )
    return page("hardneg: sign in", note + form)
