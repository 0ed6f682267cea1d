"""Reports: one markdown table (and a figure laid out like the paper's, when matplotlib is installed) per
benchmark, from the result files ``rmtzoo bench run`` wrote.

Each row is a cell: its labels, the regenerated test metric as mean ± sample std over seeds (n), the
paper's number where a reference table has it (``benchmarks/reference/paper_numbers.csv``: columns
artefact, model, segments, ..., metric, mean, std, n_runs; matched on artefact + model + the benchmark's
``match`` keys), and the difference. Below the table: whether the paper's ordering of models holds at
each x, and whether the paper's claims about particular cells (``Benchmark.claims``) hold, as measured
and in the paper's numbers. The figure follows ``Benchmark.figure``: lines, grouped bars, or none for
an artefact the paper prints as a table.
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


def _variant(row) -> str:
    """The tag an id carries past its setting (``T5:trxl:L150:m150:2x`` -> ``2x``; ``paper``, ``csv``,
    ``500k``, ``d512``): rows of one setting that are not the plain run."""
    parts = str(row.get("id", "")).split(":")[2:]
    return ":".join(p for p in parts if not re.fullmatch(r"[nLmck]\d+", p))


def paper_value(rows, artefact: str, labels: dict, metric: str, keys=("segments",)) -> dict | None:
    """The reference row for a cell: same artefact, model and ``keys`` columns (a key the cell has no
    label for must be empty in the row); then memory where several rows are left; then the row whose
    variant tag (``_variant``) equals the cell's ``variant`` label (none: the plain run), else the first."""
    hits = [r for r in rows
            if _norm(r.get("artefact", "")) == _norm(artefact)
            and _norm(r.get("model", "")) == _norm(labels.get("model", ""))
            and all(_norm(r.get(k) or "") == _norm(labels.get(k, "")) for k in keys)]
    short = metric.split("/")[-1]
    if any(r.get("metric") for r in hits):
        hits = [r for r in hits if not r.get("metric") or _norm(r["metric"]) == _norm(short)] or hits
    if len(hits) > 1 and "memory" in labels:
        hits = [r for r in hits if _norm(r.get("memory", "")) == _norm(labels["memory"])] or hits
    if len(hits) > 1:
        hits = [r for r in hits if _variant(r) == str(labels.get("variant", ""))] or hits
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


def scaled_paper_value(bench, rows, labels: dict) -> dict | None:
    """``paper_value`` for a cell of ``bench``, in the metric's units (divided by ``bench.paper_scale``)."""
    ref = paper_value(rows, bench.artefact, labels, bench.metric, bench.match)
    scale = getattr(bench, "paper_scale", 1.0)
    if ref is None or scale == 1.0:
        return ref
    return {**ref, "mean": ref["mean"] / scale, "std": ref["std"] / scale}


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
    rows, metric = [], bench.metric_for(preset)
    for cell in bench.cells(preset):
        want = load_config({**json.loads(json.dumps(dict(cell.config))), "seed": 0}, registry=registry)
        want = {k: v for k, v in want.model_dump(mode="json").items() if k != "seed"}
        values, seeds = [], []
        for rec in records:
            config = {k: v for k, v in rec.get("config", {}).items() if k != "seed"}
            if rec.get("labels") == dict(cell.labels) and config == want and metric in rec.get("metrics", {}):
                values.append(float(rec["metrics"][metric]))
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


def _in_order(values, higher_is_better: bool) -> bool:
    return all((a >= b) if higher_is_better else (a <= b) for a, b in zip(values, values[1:], strict=False))


def ordering_checks(bench, rows) -> list[str]:
    """At each x value where every model in ``bench.ordering`` has a result: does best-first hold?
    (A ``table`` benchmark has no x: one check over all its rows.)"""
    if not bench.ordering:
        return []
    x = None if bench.figure == "table" else bench.x
    means: dict[str, dict[str, float]] = {}
    for row in rows:
        mean, _, n = _stats(row["values"])
        if n:
            means.setdefault(str(row["labels"].get(x, "")), {})[str(row["labels"].get(bench.line))] = mean
    sign = " >= " if bench.higher_is_better else " <= "
    lines = []
    for at, by_line in means.items():
        present = [m for m in bench.ordering if m in by_line]
        if len(present) < 2:
            continue
        holds = _in_order([by_line[m] for m in present], bench.higher_is_better)
        chain = sign.join(f"{m} {by_line[m]:.3f}" for m in present)
        lines.append(f"- {f'{x} {at}: ' if x else ''}{chain}: {'holds' if holds else 'does NOT hold'}")
    return lines


def _claim_holds(claim, values, higher_is_better: bool) -> bool:
    if claim.within is None:
        return _in_order(values, higher_is_better)
    return max(values) - min(values) <= claim.within * max(abs(v) for v in values)


def claim_checks(bench, rows, reference_rows) -> list[str]:
    """Each of ``bench.claims``: the selected cells' regenerated means and whether the claim holds, then
    the same for the paper's numbers of those cells."""
    from rmtzoo.bench._grid import matches

    lines = []
    for claim in bench.claims:
        picked = [next((r for r in rows if matches(r["labels"], {k: str(v) for k, v in sel.items()})), None)
                  for sel in claim.cells]
        found = [r for r in picked if r is not None]
        measured = [_stats(r["values"])[0] for r in found]
        if len(found) < len(picked) or any(math.isnan(m) for m in measured):
            verdict = "not measured (a cell has no result in this preset)"
        else:
            verdict = ("holds" if _claim_holds(claim, measured, bench.higher_is_better) else "does NOT hold") + \
                " (" + ", ".join(f"{m:.3f}" for m in measured) + ")"
        refs = [scaled_paper_value(bench, reference_rows, r["labels"]) for r in found]
        if refs and len(found) == len(picked) and all(refs):
            ok = _claim_holds(claim, [ref["mean"] for ref in refs], bench.higher_is_better)
            verdict += f"; paper: {'holds' if ok else 'does NOT hold'} (" + ", ".join(f"{ref['mean']:g}" for ref in refs) + ")"
        lines.append(f"- {claim.text}: {verdict}")
    return lines


def render(bench, rows, *, preset: str, reference_rows, command: str) -> str:
    label_keys = list(dict.fromkeys(k for row in rows for k in row["labels"]))
    have_ref = bool(reference_rows)
    hw, ver = hardware(), versions()
    recorded = sorted({json.dumps(r.get("hardware", {}), sort_keys=True) for row in rows for r in row["records"]})
    out = [f"# {bench.name} ({bench.artefact}), preset `{preset}`", ""]
    if bench.summary:
        out += [bench.summary, ""]
    better = "higher" if bench.higher_is_better else "lower"
    out += [f"- command: `{command}`", f"- preset: {preset}",
            f"- metric: {bench.metric_for(preset)}, {better} is better (mean ± sample std over seeds, (n) seeds)",
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
            ref = scaled_paper_value(bench, reference_rows, row["labels"])
            if ref is None:
                cells += ["–", "–"]
            else:
                cells.append(_fmt(ref["mean"], ref["std"]) + (f" ({ref['n']})" if ref["n"] else ""))
                same_metric = bench.metric_for(preset) == bench.metric  # else the paper's is another unit
                cells.append(f"{mean - ref['mean']:+.3f}" if n and same_metric else "–")
        out.append("| " + " | ".join(cells) + " |")
    checks = ordering_checks(bench, rows)
    if checks:
        where = "" if bench.figure == "table" else f" at every {bench.x}"
        out += ["", f"Paper's ordering ({', '.join(bench.ordering)}, best first{where}), as measured:", "", *checks]
    claims = claim_checks(bench, rows, reference_rows)
    if claims:
        out += ["", "The paper's claims, as measured and in the paper's numbers:", "", *claims]
    return "\n".join(out) + "\n"


def _x_label(bench) -> str:
    return bench.x_label or ("number of segments" if bench.x == "segments" else bench.x.replace("_", " "))


def figure(bench, rows, path: Path, *, metric: str | None = None) -> str | None:
    """The paper's layout (``bench.figure``): metric vs ``bench.x`` with one line per ``bench.line`` value,
    or bars grouped by x with one bar per line value; sample-std error bars. Returns None when written,
    else why not."""
    if bench.figure == "table":
        return "the paper prints this artefact as a table: no figure"
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install matplotlib): figure skipped"
    series: dict[str, dict[float, tuple[float, float]]] = {}
    for row in rows:
        mean, std, n = _stats(row["values"])
        if n:
            x = float(row["labels"].get(bench.x))
            series.setdefault(str(row["labels"].get(bench.line)), {})[x] = (mean, 0.0 if math.isnan(std) else std)
    if not series:
        return "no results yet: figure skipped"
    fig, ax = plt.subplots(figsize=(4.5, 3.5) if bench.figure == "lines" else (6.0, 3.5))
    if bench.figure == "lines":
        for name, points in series.items():
            xs = sorted(points)
            ax.errorbar(xs, [points[x][0] for x in xs], yerr=[points[x][1] for x in xs], marker="o", capsize=3,
                        label=name)
    else:  # bars: one group per x value, one bar per series, missing bars left out (as in Fig 5b)
        groups = sorted({x for points in series.values() for x in points})
        width = 0.8 / len(series)
        for i, (name, points) in enumerate(series.items()):
            at = [g for g, x in enumerate(groups) if x in points]
            ax.bar([g - 0.4 + width * (i + 0.5) for g in at], [points[groups[g]][0] for g in at], width,
                   yerr=[points[groups[g]][1] for g in at], capsize=2, label=name)
        ax.set_xticks(range(len(groups)), [f"{x:g}" for x in groups])
        low = min(mean - std for points in series.values() for mean, std in points.values())
        ax.set_ylim(bottom=max(0.0, 0.9 * low))  # zoomed like Fig 5b (21-40), so close bars stay apart
    ax.set_xlabel(_x_label(bench))
    ax.set_ylabel((metric or bench.metric).split("/")[-1])
    ax.set_title(f"{bench.artefact}: {bench.name}")
    ax.legend(fontsize="small")
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
        if getattr(bench, "draw", None) is not None:  # figures of the trained models (attention maps)
            text += "\n" + bench.draw(rows, out_dir=folder, results_folder=Path(results_dir) / name / preset)
        else:
            why = figure(bench, rows, folder / f"{name}.png", metric=bench.metric_for(preset))
            text += "\n" + (f"![{bench.artefact}]({name}.png)\n" if why is None else f"Figure: {why}.\n")
        atomic_write_text(folder / f"{name}.md", text)
        written.append(folder / f"{name}.md")
    return written
