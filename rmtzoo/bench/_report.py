"""Reports: one markdown table (and a figure laid out like the paper's, when matplotlib is installed) per
benchmark, from the result files ``rmtzoo bench run`` wrote.

Each row is a cell: its labels, the regenerated test metric as mean ± sample std over seeds (n), the
paper's number where a reference table has it (the ``paper_numbers.csv`` packaged with the
rmtzoo-benchmarks distribution, found with ``importlib.resources`` wherever the command runs, or
``--reference``: columns artefact, model, segments, ..., metric, mean, std, n_runs; matched on artefact +
model + the benchmark's ``match`` keys), and the difference, but only where the preset runs the paper's
own task (``small`` mostly shrinks it: then the paper's number is there for orientation and only
orderings and claims are compared). Below the table: whether the paper's ordering of models holds at
each x, and whether the paper's claims about particular cells (``Benchmark.claims``) hold, as measured
and in the paper's numbers. A measured ordering or claim "holds" only when every margin exceeds the seed
spread (the larger sample std of the two cells, each with at least 2 seeds); a margin inside it is
"within noise". The figure follows ``Benchmark.figure``: lines, grouped bars, or none for an artefact the
paper prints as a table; the paper's numbers are drawn dashed in the same colour.
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

REFERENCE_PACKAGE = "rmtzoo_benchmarks"  # the distribution that ships the paper's numbers
REFERENCE_FILE = ("reference", "paper_numbers.csv")
# size keys of a task block: a preset that changes only these still runs the paper's task
SIZE_KEYS = frozenset({"train_size", "valid_size", "test_size", "data_seed", "cache_dir", "path", "data_dir"})


def _norm(value: Any) -> str:
    text = re.sub(r"[^0-9a-z.]", "", str(value).lower())
    text = {"transformerxl": "trxl", "rmtbptt0": "rmt"}.get(text, text)
    with_float = re.fullmatch(r"\d+\.0+", text)
    return text.split(".")[0] if with_float else text


def packaged_reference():
    """The paper's numbers as packaged with the rmtzoo-benchmarks distribution (an ``importlib.resources``
    file, so found from any working directory), or None when that distribution is not installed."""
    from importlib.resources import files

    try:
        ref = files(REFERENCE_PACKAGE).joinpath(*REFERENCE_FILE)
    except ModuleNotFoundError:
        return None
    return ref if ref.is_file() else None


def load_reference(path) -> list[dict[str, str]]:
    """Rows of a reference CSV (a path or an ``importlib.resources`` file); [] when there is none."""
    if path is None:
        return []
    if isinstance(path, (str, Path)):
        path = Path(path)
    if not path.is_file():
        return []
    with path.open("r", newline="", encoding="utf-8") as fh:
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


def collect(registry, name: str, preset: str, results_dir, *, backbone: str | None = None) -> tuple[Any, list[dict]]:
    """The benchmark and, per cell (in grid order), the metric values of its finished seeds."""
    from rmtzoo._config import load_config

    bench = get_benchmark(registry, name, backbone=backbone)
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
        cfg = load_config({**json.loads(json.dumps(dict(cell.config))), "seed": 0}, registry=registry)
        decoding = getattr(getattr(cfg.task, "params", None), "decoding", None)  # sample tasks only
        want = {k: v for k, v in cfg.model_dump(mode="json").items() if k != "seed"}
        values, seeds = [], []
        for rec in records:
            config = {k: v for k, v in rec.get("config", {}).items() if k != "seed"}
            if rec.get("labels") == dict(cell.labels) and config == want and metric in rec.get("metrics", {}):
                values.append(float(rec["metrics"][metric]))
                seeds.append(rec.get("seed"))
        rows.append({"labels": dict(cell.labels), "values": values, "seeds": seeds, "decoding": decoding,
                     "backbone": want.get("backbone", {}), "records": [
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


HOLDS, NOT_HOLD, NOISE, FEW = "holds", "does NOT hold", "within noise", "too few seeds to tell"


def _pair_verdict(better, worse, higher_is_better: bool) -> str:
    """``better`` and ``worse`` are ``(mean, std, n)``: the claim is that the first is better. It holds when
    the margin exceeds the seed spread (the larger of the two sample stds), fails when the reverse margin
    does; anything inside the spread is within noise; with fewer than 2 seeds in a cell there is no spread."""
    margin = (better[0] - worse[0]) if higher_is_better else (worse[0] - better[0])
    if better[2] < 2 or worse[2] < 2:
        return FEW
    spread = max(better[1], worse[1])
    if margin > spread:
        return HOLDS
    return NOT_HOLD if -margin > spread else NOISE


def _combine(verdicts) -> str:
    """A chain's verdict from its pairs': any failure fails it; all holding holds it; else the weakest."""
    verdicts = list(verdicts)
    for v in (NOT_HOLD, FEW, NOISE):
        if v in verdicts:
            return v
    return HOLDS


def _chain(stats, higher_is_better: bool) -> str:
    return _combine(_pair_verdict(a, b, higher_is_better) for a, b in zip(stats, stats[1:], strict=False))


def _fmt_short(stat) -> str:
    mean, std, n = stat
    return f"{mean:.3f}" + (f" ± {std:.3f}" if not math.isnan(std) else "") + f" (n={n})"


# How two neighbouring cells' means compare, as measured (``_pair_verdict`` read as "the first is higher").
HIGHER, LOWER, EQUAL, CLOSE, UNTOLD = ">", "<", "=", "≈", "vs"
SIGNS_LEGEND = (f"Between neighbours, `{HIGHER}` / `{LOWER}`: the mean is higher / lower by more than the seed "
                f"spread; `{CLOSE}`: within noise (`{EQUAL}`: the same mean); `{UNTOLD}`: fewer than 2 seeds.")


def _relation(a, b) -> str:
    """The measured relation of ``a``'s mean to ``b``'s (each ``(mean, std, n)``), whatever the claim."""
    verdict = _pair_verdict(a, b, higher_is_better=True)
    if verdict == FEW:
        return UNTOLD
    if verdict == NOISE:
        return EQUAL if a[0] == b[0] else CLOSE
    return HIGHER if verdict == HOLDS else LOWER


def chain_text(chain) -> str:
    """``[(line value, (mean, std, n)), ...]`` in the claimed order, each neighbour pair joined by its
    measured relation: ``RMT 0.493 ± 0.004 (n=2) < Tr-XL 0.802 ± 0.201 (n=2) > Baseline ...``."""
    text = ""
    for i, (model, stat) in enumerate(chain):
        if i:
            text += f" {_relation(chain[i - 1][1], stat)} "
        text += f"{model} {_fmt_short(stat)}"
    return text


def ordering_checks(bench, rows) -> list[str]:
    """At each x value where at least two models of ``bench.ordering`` have a result: does best-first hold
    beyond the seed spread? (A ``table`` benchmark has no x: one check over all its rows.) The models are
    listed in the claimed order, with the measured relation between neighbours (``chain_text``)."""
    x = None if bench.figure == "table" else bench.x
    return [f"- {f'{x} {at}: ' if x else ''}{chain_text(chain)}: {verdict}"
            for at, chain, verdict in ordering_results(bench, rows)]


def ordering_results(bench, rows) -> list[tuple[str, list[tuple[str, tuple]], str]]:
    """``(x value, [(line value, (mean, std, n)), ...] best first, verdict)`` per x (see ordering_checks)."""
    if not bench.ordering:
        return []
    x = None if bench.figure == "table" else bench.x
    stats: dict[str, dict[str, tuple]] = {}
    for row in rows:
        stat = _stats(row["values"])
        if stat[2]:
            stats.setdefault(str(row["labels"].get(x, "")), {})[str(row["labels"].get(bench.line))] = stat
    out = []
    for at, by_line in stats.items():
        present = [m for m in bench.ordering if m in by_line]
        if len(present) < 2:
            continue
        out.append((at, [(m, by_line[m]) for m in present], _chain([by_line[m] for m in present], bench.higher_is_better)))
    return out


def claim_verdict(claim, stats, higher_is_better: bool) -> str:
    """A claim over cells' ``(mean, std, n)``, best first: an ordering holds when every step exceeds the
    seed spread; an agreement (``within``) holds when the means are within the tolerance, fails when they
    are further apart than tolerance plus spread, and is within noise in between."""
    if claim.within is None:
        return _chain(stats, higher_is_better)
    means = [m for m, _, _ in stats]
    gap, scale = max(means) - min(means), max(abs(m) for m in means)
    if any(n < 2 for _, _, n in stats):
        return FEW
    if gap <= claim.within * scale:
        return HOLDS
    spread = max(0.0 if math.isnan(s) else s for _, s, _ in stats)
    return NOT_HOLD if gap > claim.within * scale + spread else NOISE


def _claim_holds(claim, values, higher_is_better: bool) -> bool:
    """The paper's own numbers (means only: most have no std): does the claim hold on them?"""
    if claim.within is None:
        return _in_order(values, higher_is_better)
    return max(values) - min(values) <= claim.within * max(abs(v) for v in values)


def claim_results(bench, rows, reference_rows) -> list[dict]:
    """Each of ``bench.claims``: the selected cells' stats, the verdict, and the paper's numbers and verdict."""
    from rmtzoo.bench._grid import matches

    out = []
    for claim in bench.claims:
        picked = [next((r for r in rows if matches(r["labels"], {k: str(v) for k, v in sel.items()})), None)
                  for sel in claim.cells]
        found = [r for r in picked if r is not None]
        stats = [_stats(r["values"]) for r in found]
        measured = len(found) == len(picked) and all(n for _, _, n in stats)
        refs = [scaled_paper_value(bench, reference_rows, r["labels"]) for r in found]
        paper = None
        if refs and len(found) == len(picked) and all(refs):
            paper = {"means": [ref["mean"] for ref in refs],
                     "holds": _claim_holds(claim, [ref["mean"] for ref in refs], bench.higher_is_better)}
        out.append({"claim": claim, "stats": stats if measured else None,
                    "verdict": claim_verdict(claim, stats, bench.higher_is_better) if measured else None,
                    "paper": paper})
    return out


def claim_checks(bench, rows, reference_rows) -> list[str]:
    """Each of ``bench.claims`` as a report line: measured (mean ± std, n) and verdict, then the paper's."""
    lines = []
    for result in claim_results(bench, rows, reference_rows):
        if result["stats"] is None:
            text = "not measured (a cell has no result in this preset)"
        else:
            text = result["verdict"] + " (" + ", ".join(_fmt_short(s) for s in result["stats"]) + ")"
        if result["paper"] is not None:
            text += (f"; paper: {'holds' if result['paper']['holds'] else 'does NOT hold'} ("
                     + ", ".join(f"{m:g}" for m in result["paper"]["means"]) + ")")
        lines.append(f"- {result['claim'].text}: {text}")
    return lines


def _task_blocks(bench, preset: str) -> set[str]:
    out = set()
    for cell in bench.cells(preset):
        task = {k: v for k, v in dict(cell.config.get("task") or {}).items() if k not in SIZE_KEYS}
        out.add(json.dumps(task, sort_keys=True, default=str))
    return out


def runs_papers_task(bench, preset: str) -> bool:
    """Whether ``preset``'s cells run the paper's task (the ``paper`` preset's task blocks, up to split
    sizes): only then is "regenerated minus paper" a difference between two measurements of one thing."""
    if preset == "paper":
        return True
    if "paper" not in bench.presets:
        return False
    return _task_blocks(bench, preset) == _task_blocks(bench, "paper") and bench.metric_for(preset) == bench.metric


_DECODING = {
    "by_length": "`by_length`: generated greedily (no teacher forcing) where the answer spans more than one "
                 "segment, teacher-forced argmax inside one segment (the paper's metric for these tasks)",
    "greedy": "`greedy`: the whole target generated greedily, no teacher forcing",
}


def _decoding_lines(rows) -> list[str]:
    """How the sample tasks' scored answers were produced (``task.decoding``); nothing for LM tasks."""
    used = sorted({row["decoding"] for row in rows if row.get("decoding")})
    return [f"- decoding: {_DECODING.get(d, d)}" for d in used]


def _backbone_lines(rows) -> list[str]:
    """The backbone of the cells, from each cell's validated config (a spec run with ``--backbone NAME``
    names NAME, a spec's own backbone is named too), with its size."""
    blocks = [row["backbone"] for row in rows if row.get("backbone")]
    kinds = sorted({b.get("kind", "?") for b in blocks})
    if not kinds:
        return []
    sizes = sorted({", ".join(f"{k} {b[k]}" for k in ("d_model", "n_layer") if k in b) for b in blocks} - {""})
    return [f"- backbone: {' / '.join(f'`{k}`' for k in kinds)}" + (f" ({'; '.join(sizes)})" if sizes else "")]


def _cpu(hw: dict) -> str:
    """The CPU's name, with torch's kernel capability (AVX2, AVX512, ...) where the record has it."""
    capability = hw.get("cpu_capability")
    return f"{hw.get('cpu')} ({capability})" if capability else f"{hw.get('cpu')}"


def render(bench, rows, *, preset: str, reference_rows, command: str) -> str:
    label_keys = list(dict.fromkeys(k for row in rows for k in row["labels"]))
    have_ref = bool(reference_rows)
    delta = have_ref and runs_papers_task(bench, preset)
    hw, ver = hardware(), versions()
    recorded = sorted({json.dumps(r.get("hardware", {}), sort_keys=True) for row in rows for r in row["records"]})
    seeds = sorted({n for n in (len(row["values"]) for row in rows) if n})
    out = [f"# {bench.name} ({bench.artefact}), preset `{preset}`", ""]
    if bench.summary:
        out += [bench.summary, ""]
    better = "higher" if bench.higher_is_better else "lower"
    n_text = "/".join(map(str, seeds)) if seeds else "0"
    out += [f"- command: `{command}`", f"- preset: {preset}",
            f"- metric: {bench.metric_for(preset)}, {better} is better (mean ± sample std over seeds, (n) seeds; "
            f"n = {n_text} here)",
            *_decoding_lines(rows),
            "- verdicts: \"holds\" only where every margin exceeds the seed spread (the larger sample std of "
            "the cells compared, each with at least 2 seeds); a smaller margin is \"within noise\"",
            f"- report written on: {hw['platform']}, CPU {_cpu(hw)}, GPU {hw['gpu'] or 'none'}",
            "- versions: " + ", ".join(f"{k} {v}" for k, v in ver.items())]
    for text in recorded:
        h = json.loads(text)
        out.append(f"- results produced on: {h.get('platform')}, CPU {_cpu(h)}, GPU {h.get('gpu') or 'none'}")
    out += _backbone_lines(rows)
    if preset in bench.notes:
        out.append(f"- note: {bench.notes[preset]}")
    reused = sorted({r["reused_from"]["benchmark"] for row in rows for r in row["records"] if r.get("reused_from")})
    if reused:
        out.append(f"- some cells were trained once for {', '.join(reused)} and reused here (same config hash; "
                   "the result files record it under `reused_from`)")
    if not have_ref:
        out.append("- paper numbers: no reference table found, column left out")
    elif not delta:
        out.append(f"- paper numbers: the `{preset}` preset runs a different task (or metric) than the paper, so "
                   "the paper column is there for orientation only and has no difference column; orderings and "
                   "claims are what compare")
    out.append("")
    header = [*label_keys, "regenerated"] + (["paper", "delta"] if delta else ["paper (orientation)"] if have_ref else [])
    out += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        mean, std, n = _stats(row["values"])
        cells = [str(row["labels"].get(k, "")) for k in label_keys]
        cells.append(_fmt(mean, std, n) if n else "– (no result)")
        if have_ref:
            ref = scaled_paper_value(bench, reference_rows, row["labels"])
            if ref is None:
                cells += ["–", "–"] if delta else ["–"]
            else:
                cells.append(_fmt(ref["mean"], ref["std"]) + (f" ({ref['n']})" if ref["n"] else ""))
                if delta:
                    cells.append(f"{mean - ref['mean']:+.3f}" if n else "–")
        out.append("| " + " | ".join(cells) + " |")
    checks = ordering_checks(bench, rows)
    if checks:
        where = "" if bench.figure == "table" else f" at every {bench.x}"
        out += ["", f"Paper's ordering ({', '.join(bench.ordering)}, best first{where}), as measured. "
                + SIGNS_LEGEND, "", *checks]
    claims = claim_checks(bench, rows, reference_rows)
    if claims:
        out += ["", "The paper's claims, as measured and in the paper's numbers:", "", *claims]
    return "\n".join(out) + "\n"


def _x_label(bench) -> str:
    return bench.x_label or ("number of segments" if bench.x == "segments" else bench.x.replace("_", " "))


def _task_text(bench, preset: str) -> str:
    """The preset's task in a few words for a figure title: its kind, and the settings all cells share."""
    tasks = [dict(cell.config.get("task") or {}) for cell in bench.cells(preset)]
    if not tasks:
        return ""
    kinds = sorted({str(t.get("kind", "")) for t in tasks})
    shared = {k: v for k, v in tasks[0].items()
              if k not in SIZE_KEYS and k != "kind" and all(t.get(k) == v for t in tasks) and not isinstance(v, dict)}
    extra = ", ".join(f"{k} {v}" for k, v in shared.items())
    return "/".join(kinds).replace("_", " ") + (f" ({extra})" if extra else "")


def paper_series(bench, rows, reference_rows, preset: str) -> tuple[dict, str | None]:
    """The paper's numbers per line value and x, to draw beside the regenerated ones: the ``paper`` preset's
    cells with their reference rows, where their x values share at least two with this preset's (Fig 3
    small: segments 1/3/6 of 1/3/6/8); else this preset's own cells matched to reference rows (the paper
    at the same labels). Returns ``(series, note)``: a note says why nothing was drawn."""
    if not reference_rows:
        return {}, "no reference table"

    def points(cell_labels):
        out: dict[str, dict[float, tuple[float, float]]] = {}
        for labels in cell_labels:
            ref = scaled_paper_value(bench, reference_rows, labels)
            try:
                x = float(labels.get(bench.x))
            except (TypeError, ValueError):
                continue
            if ref is not None:
                std = 0.0 if math.isnan(ref["std"]) else ref["std"]
                out.setdefault(str(labels.get(bench.line)), {})[x] = (ref["mean"], std)
        return out

    own = [dict(row["labels"]) for row in rows]
    own_x = {float(labels[bench.x]) for labels in own if bench.x in labels}
    if preset != "paper" and "paper" in bench.presets:
        paper = points([dict(c.labels) for c in bench.cells("paper")])
        paper_x = {x for pts in paper.values() for x in pts}
        if len(own_x & paper_x) >= 2:
            return paper, None
    series = points(own)
    return series, None if series else f"the paper has no number at this preset's {_x_label(bench)} values"


def figure(bench, rows, path: Path, *, metric: str | None = None, preset: str = "", reference_rows=()) -> str | None:
    """The paper's layout (``bench.figure``): metric vs ``bench.x`` with one line per ``bench.line`` value,
    or bars grouped by x with one bar per line value; sample-std error bars; the paper's numbers dashed in
    the same colour, the chance level dotted, the legend outside the axes. Returns None when written, else
    why not."""
    if bench.figure == "table":
        return "the paper prints this artefact as a table: no figure"
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator
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
    paper, _ = paper_series(bench, rows, list(reference_rows), preset) if preset else ({}, None)
    names = list(dict.fromkeys([*series, *paper]))
    colours = {name: f"C{i % 10}" for i, name in enumerate(names)}
    fig, ax = plt.subplots(figsize=(6.0, 3.6) if bench.figure == "lines" else (7.5, 3.6))
    xs_all = sorted({x for pts in (*series.values(), *paper.values()) for x in pts})
    if bench.figure == "lines":
        for name, points in series.items():
            xs = sorted(points)
            ax.errorbar(xs, [points[x][0] for x in xs], yerr=[points[x][1] for x in xs], marker="o", capsize=3,
                        color=colours[name], label=name)
        for name, points in paper.items():
            xs = sorted(points)
            ax.errorbar(xs, [points[x][0] for x in xs], yerr=[points[x][1] for x in xs], marker="x", capsize=2,
                        color=colours[name], linestyle="--", linewidth=1, alpha=0.8, label=f"{name} (paper)")
        if all(float(x).is_integer() for x in xs_all):
            if len(xs_all) <= 12:
                ax.set_xticks(xs_all, [f"{x:g}" for x in xs_all])
            else:
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    else:  # bars: one group per x value, one bar per series, missing bars left out (as in Fig 5b)
        groups = sorted({x for points in series.values() for x in points})
        width = 0.8 / len(series)
        for i, (name, points) in enumerate(series.items()):
            at = [g for g, x in enumerate(groups) if x in points]
            left = [g - 0.4 + width * (i + 0.5) for g in at]
            ax.bar(left, [points[groups[g]][0] for g in at], width, yerr=[points[groups[g]][1] for g in at],
                   capsize=2, color=colours[name], label=name)
            ref = paper.get(name, {})
            for g, centre in zip(at, left, strict=True):
                if groups[g] in ref:
                    ax.hlines(ref[groups[g]][0], centre - width / 2, centre + width / 2, colors=colours[name],
                              linestyles="--", linewidth=2.0, zorder=3,
                              label=f"{name} (paper)" if g == next(h for h in at if groups[h] in ref) else None)
        ax.set_xticks(range(len(groups)), [f"{x:g}" for x in groups])
        values = [mean - std for points in series.values() for mean, std in points.values()]
        values += [mean for name in series for x, (mean, _) in paper.get(name, {}).items() if x in groups]
        ax.set_ylim(bottom=max(0.0, 0.9 * min(values)))  # zoomed like Fig 5b (21-40), so close bars stay apart
    chance = bench.chance_for(preset) if preset else None
    if chance is not None:
        ax.axhline(chance, color="grey", linestyle=":", linewidth=1, label=f"chance ({chance:g})")
    short = (metric or bench.metric).split("/")[-1]
    if bench.figure == "lines" and short in ("accuracy", "exact_accuracy", "f1"):
        ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel(_x_label(bench))
    ax.set_ylabel(short)
    seeds = sorted({n for n in (len(row["values"]) for row in rows) if n})
    n_text = "/".join(map(str, seeds))
    task = _task_text(bench, preset) if preset else ""
    ax.set_title(f"{bench.artefact}: {task}" + (f", preset {preset}" if preset else "")
                 + f", {n_text} seed{'s' if seeds != [1] else ''}", fontsize=9)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=120, bbox_inches="tight"), binary=True)
    plt.close(fig)
    return None


def _caption(bench, rows, preset: str, reference_rows) -> str:
    paper, note = paper_series(bench, rows, reference_rows, preset)
    parts = [f"Figure: {bench.metric_for(preset).split('/')[-1]} vs {_x_label(bench)}, preset `{preset}` "
             "(solid, sample-std error bars)"]
    if paper:
        parts.append("the paper's numbers dashed in the same colour" +
                     ("" if runs_papers_task(bench, preset) else " (the paper's own, larger task: for orientation)"))
    elif note:
        parts.append(f"paper's numbers not drawn: {note}")
    if bench.chance_for(preset) is not None:
        parts.append(f"chance {bench.chance_for(preset):g} dotted")
    return "; ".join(parts) + "."


def report(registry, names, *, preset: str = "smoke", results_dir="results", reports_dir="reports",
           reference=None, command: str | None = None, backbone: str | None = None) -> list[Path]:
    """Write ``reports_dir/<preset>/<bench>.md`` (and ``.png``) per benchmark; returns the markdown paths.
    ``reference``: a paper-numbers CSV (default: the one packaged with rmtzoo-benchmarks)."""
    command = command or " ".join(["rmtzoo", *sys.argv[1:]])
    reference_rows = load_reference(reference if reference is not None else packaged_reference())
    written = []
    for name in names:
        bench, rows = collect(registry, name, preset, results_dir, backbone=backbone)
        text = render(bench, rows, preset=preset, reference_rows=reference_rows, command=command)
        folder = Path(reports_dir) / preset
        if getattr(bench, "draw", None) is not None:  # figures of the trained models (attention maps)
            text += "\n" + bench.draw(rows, out_dir=folder, results_folder=Path(results_dir) / name / preset)
        else:
            why = figure(bench, rows, folder / f"{name}.png", metric=bench.metric_for(preset), preset=preset,
                         reference_rows=reference_rows)
            text += "\n" + (f"![{bench.artefact}]({name}.png)\n\n{_caption(bench, rows, preset, reference_rows)}\n"
                             if why is None else f"Figure: {why}.\n")
        atomic_write_text(folder / f"{name}.md", text)
        written.append(folder / f"{name}.md")
    return written
