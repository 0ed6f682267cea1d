"""Reports: one markdown table (and a figure laid out like the paper's, when matplotlib is installed) per
benchmark, from the result files ``rmtzoo bench run`` wrote.

Each row is a cell: its labels, the regenerated test metric as mean ± sample std over seeds (n), the
paper's number where a reference table has it (``benchmarks/reference/paper_numbers.csv``: columns
artefact, model, segments, ..., metric, mean, std, n_runs; matched on artefact + model + segments), and
the difference. Below the table: whether the paper's ordering of models holds at each x, as measured.
"""

from __future__ import annotations

import csv
import json
import math
import re
import sys
from pathlib import Path
from typing import Any

from rmtzoo._io import atomic_write, atomic_write_text
from rmtzoo.bench._runner import get_benchmark, hardware, versions

DEFAULT_REFERENCE = Path("benchmarks/reference/paper_numbers.csv")


def _norm(value: Any) -> str:
    text = re.sub(r"[^0-9a-z.]", "", str(value).lower())
    text = {"transformerxl": "trxl", "rmtbptt0": "rmt"}.get(text, text)
    with_float = re.fullmatch(r"\d+\.0+", text)
    return text.split(".")[0] if with_float else text


def load_reference(path) -> list[dict[str, str]]:
    path = Path(path) if path is not None else None
    if path is None or not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        return [dict(row) for row in csv.DictReader(fh)]


def paper_value(rows, artefact: str, labels: dict, metric: str) -> dict | None:
    """The reference row for a cell: same artefact, model and segments (memory too where both have it)."""
    hits = [r for r in rows
            if _norm(r.get("artefact", "")) == _norm(artefact)
            and _norm(r.get("model", "")) == _norm(labels.get("model", ""))
            and _norm(r.get("segments", "")) == _norm(labels.get("segments", ""))]
    short = metric.split("/")[-1]
    if any(r.get("metric") for r in hits):
        hits = [r for r in hits if not r.get("metric") or _norm(r["metric"]) == _norm(short)] or hits
    if len(hits) > 1 and "memory" in labels:
        hits = [r for r in hits if _norm(r.get("memory", "")) == _norm(labels["memory"])] or hits
    if not hits:
        return None
    row = hits[0]
    try:
        mean = float(row["mean"])
    except (KeyError, TypeError, ValueError):
        return None
    try:
        std = float(row.get("std") or "nan")
    except ValueError:
        std = math.nan
    return {"mean": mean, "std": std, "n": row.get("n_runs", "")}


def collect(registry, name: str, preset: str, results_dir) -> tuple[Any, list[dict]]:
    """The benchmark and, per cell (in grid order), the metric values of its finished seeds."""
    from rmtzoo._config import load_config

    bench = get_benchmark(registry, name)
    folder = Path(results_dir) / name / preset
    records = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        if path.name.endswith(".failed.json"):
            continue
        try:
            records.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
    rows = []
    for cell in bench.cells(preset):
        want = load_config({**json.loads(json.dumps(dict(cell.config))), "seed": 0}, registry=registry)
        want = {k: v for k, v in want.model_dump(mode="json").items() if k != "seed"}
        values, seeds = [], []
        for rec in records:
            config = {k: v for k, v in rec.get("config", {}).items() if k != "seed"}
            if rec.get("labels") == dict(cell.labels) and config == want and bench.metric in rec.get("metrics", {}):
                values.append(float(rec["metrics"][bench.metric]))
                seeds.append(rec.get("seed"))
        rows.append({"labels": dict(cell.labels), "values": values, "seeds": seeds, "records": [
            r for r in records if r.get("labels") == dict(cell.labels)]})
    return bench, rows


def _stats(values):
    n = len(values)
    if not n:
        return math.nan, math.nan, 0
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else math.nan
    return mean, std, n


def _fmt(mean, std, n=None) -> str:
    if math.isnan(mean):
        return "–"
    text = f"{mean:.3f}" + (f" ± {std:.3f}" if not math.isnan(std) else "")
    return text + (f" ({n})" if n is not None else "")


def ordering_checks(bench, rows) -> list[str]:
    """At each x value where every model in ``bench.ordering`` has a result: does best-first hold?"""
    if not bench.ordering:
        return []
    means: dict[str, dict[str, float]] = {}
    for row in rows:
        mean, _, n = _stats(row["values"])
        if n:
            means.setdefault(str(row["labels"].get(bench.x)), {})[str(row["labels"].get(bench.line))] = mean
    lines = []
    for x, by_line in means.items():
        present = [m for m in bench.ordering if m in by_line]
        if len(present) < 2:
            continue
        holds = all(by_line[a] >= by_line[b] for a, b in zip(present, present[1:], strict=False))
        chain = " >= ".join(f"{m} {by_line[m]:.3f}" for m in present)
        lines.append(f"- {bench.x} {x}: {chain}: {'holds' if holds else 'does NOT hold'}")
    return lines


def render(bench, rows, *, preset: str, reference_rows, command: str) -> str:
    label_keys = list(dict.fromkeys(k for row in rows for k in row["labels"]))
    have_ref = bool(reference_rows)
    hw, ver = hardware(), versions()
    recorded = sorted({json.dumps(r.get("hardware", {}), sort_keys=True) for row in rows for r in row["records"]})
    out = [f"# {bench.name} ({bench.artefact}), preset `{preset}`", ""]
    if bench.summary:
        out += [bench.summary, ""]
    out += [f"- command: `{command}`", f"- preset: {preset}", f"- metric: {bench.metric} (mean ± sample std over seeds, (n) seeds)",
            f"- report written on: {hw['platform']}, CPU {hw['cpu']}, GPU {hw['gpu'] or 'none'}",
            "- versions: " + ", ".join(f"{k} {v}" for k, v in ver.items())]
    for text in recorded:
        h = json.loads(text)
        out.append(f"- results produced on: {h.get('platform')}, CPU {h.get('cpu')}, GPU {h.get('gpu') or 'none'}")
    if preset in bench.notes:
        out.append(f"- note: {bench.notes[preset]}")
    if not have_ref:
        out.append("- paper numbers: no reference table found, column left out")
    out.append("")
    header = [*label_keys, "regenerated"] + (["paper", "delta"] if have_ref else [])
    out += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        mean, std, n = _stats(row["values"])
        cells = [str(row["labels"].get(k, "")) for k in label_keys]
        cells.append(_fmt(mean, std, n) if n else "– (no result)")
        if have_ref:
            ref = paper_value(reference_rows, bench.artefact, row["labels"], bench.metric)
            if ref is None:
                cells += ["–", "–"]
            else:
                cells.append(_fmt(ref["mean"], ref["std"]) + (f" ({ref['n']})" if ref["n"] else ""))
                cells.append(f"{mean - ref['mean']:+.3f}" if n else "–")
        out.append("| " + " | ".join(cells) + " |")
    checks = ordering_checks(bench, rows)
    if checks:
        out += ["", f"Paper's ordering ({' >= '.join(bench.ordering)} at every {bench.x}), as measured:", "", *checks]
    return "\n".join(out) + "\n"


def figure(bench, rows, path: Path) -> str | None:
    """The paper's layout: metric vs ``bench.x``, one line per ``bench.line`` value, sample-std error bars.
    Returns None when written, else why not."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install matplotlib): figure skipped"
    lines: dict[str, list[tuple[float, float, float]]] = {}
    for row in rows:
        mean, std, n = _stats(row["values"])
        if n:
            x = row["labels"].get(bench.x)
            lines.setdefault(str(row["labels"].get(bench.line)), []).append(
                (float(x), mean, 0.0 if math.isnan(std) else std))
    if not lines:
        return "no results yet: figure skipped"
    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    for name, points in lines.items():
        points.sort()
        xs, ys, es = zip(*points, strict=True)
        ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=name)
    ax.set_xlabel(f"number of {bench.x}")
    ax.set_ylabel(bench.metric)
    ax.set_title(f"{bench.artefact}: {bench.name}")
    ax.legend()
    fig.tight_layout()
    atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=120), binary=True)
    plt.close(fig)
    return None


def report(registry, names, *, preset: str = "smoke", results_dir="results", reports_dir="reports",
           reference=DEFAULT_REFERENCE, command: str | None = None) -> list[Path]:
    """Write ``reports_dir/<preset>/<bench>.md`` (and ``.png``) per benchmark; returns the markdown paths."""
    command = command or " ".join(["rmtzoo", *sys.argv[1:]])
    reference_rows = load_reference(reference)
    written = []
    for name in names:
        bench, rows = collect(registry, name, preset, results_dir)
        text = render(bench, rows, preset=preset, reference_rows=reference_rows, command=command)
        folder = Path(reports_dir) / preset
        why = figure(bench, rows, folder / f"{name}.png")
        text += "\n" + (f"![{bench.artefact}]({name}.png)\n" if why is None else f"Figure: {why}.\n")
        atomic_write_text(folder / f"{name}.md", text)
        written.append(folder / f"{name}.md")
    return written
