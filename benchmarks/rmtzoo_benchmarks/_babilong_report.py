"""The babilong report's own part: accuracy against context length per model (table and figure, mean and
sample std over seeds, n samples per point), and the cost of the longest evaluation of each model."""

from __future__ import annotations

import math
from pathlib import Path

from rmtzoo._io import atomic_write
from rmtzoo.tasks._babi import PLACES


def _sweeps(rows) -> dict[str, dict[int, list[dict]]]:
    """model -> length -> one point per seed."""
    out: dict[str, dict[int, list[dict]]] = {}
    for row in rows:
        for record in row["records"]:
            for point in (record.get("analysis") or {}).get("lengths", []):
                out.setdefault(row["labels"]["model"], {}).setdefault(int(point["length"]), []).append(point)
    return out


def _mean_std(values):
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else math.nan
    return mean, std


def _cell(points) -> str:
    mean, std = _mean_std([p["accuracy"] for p in points])
    samples = sum(p["n"] for p in points)
    spread = "" if math.isnan(std) else f" ± {std:.2f}"
    return f"{mean:.2f}{spread} ({len(points)}s, {samples}n)"


def draw(rows, *, out_dir) -> str:
    sweeps = _sweeps(rows)
    if not sweeps:
        return "No length sweep recorded yet.\n"
    lengths = sorted({n for per in sweeps.values() for n in per})
    lines = ["## Exact match against context length", "",
             "Mean ± sample std over seeds; (Ns, Nn): seeds and test samples in all. Blank: not evaluated. "
             f"Guessing one of the {len(PLACES)} places scores {1 / len(PLACES):.2f}. {_samples_note(sweeps)}", "",
             "| model | " + " | ".join(f"{n:,}" for n in lengths) + " |", "|---|" + "---|" * len(lengths)]
    for model, per in sweeps.items():
        lines.append(f"| {model} | " + " | ".join(_cell(per[n]) if n in per else "" for n in lengths) + " |")
    lines += ["", "## The longest evaluation of each model", "",
              "No gradient, segment by segment; peak RSS is the whole process's resident memory (torch and the "
              "model included) while that length ran, or since the process started where marked *.", "",
              "| model | tokens | samples (all seeds) | batch | tokens/s (mean over seeds) | peak RSS, MB (max) |",
              "|---|---|---|---|---|---|"]
    for model, per in sweeps.items():
        longest = max(per)
        points = per[longest]
        rate = sum(p["tokens_per_s"] for p in points) / len(points)
        batch = "/".join(sorted({str(p.get("batch_size", p["n"])) for p in points}))
        scope = "" if all(p.get("peak_rss_scope") == "length" for p in points) else "*"
        lines.append(f"| {model} | {longest:,} | {sum(p['n'] for p in points)} | {batch} | {rate:,.0f} | "
                     f"{max(p['peak_rss_mb'] for p in points):,.0f}{scope} |")
    lines += ["", *_runs(rows)]
    figure = _figure(sweeps, Path(out_dir) / "babilong_lengths.png")
    lines += ["", figure or "![accuracy against context length](babilong_lengths.png)", ""]
    return "\n".join(lines)


def _samples_note(sweeps) -> str:
    points = [p for per in sweeps.values() for pts in per.values() for p in pts]
    if all(isinstance(p.get("indices"), list) for p in points):
        fewest = min(p["distinct_answers"] for p in points)
        return ("Each point asks test questions evenly spaced over the test split, the same for every model and "
                f"seed at a length (at least {fewest} different answers among them).")
    return ("Some points ask the test split's first n questions (result files written before the sweep spread "
            "them), the same at every seed.")


def _runs(rows) -> list[str]:
    """Per run: where training ended (the trainer's test runs at the curriculum stage it ended on) against
    the sweep's point at the training length (at the config's segments)."""
    lines = ["## Each run: the trainer's test and the sweep at the training length", "",
             "The trainer's test/accuracy (the first table's column, the whole test split) runs at the segment "
             "count the curriculum ended on; the sweep runs every length at the config's segment length (full "
             "attention: the whole sample). The two can differ where training ended before the curriculum's "
             "last stage.", "",
             "| model | seed | steps | segments at the trainer's test | trainer test/accuracy | "
             "sweep at the training length (n, segment length) |", "|---|---|---|---|---|---|"]
    for row in rows:
        for record in sorted(row["records"], key=lambda r: r.get("seed", 0)):
            metrics, points = record.get("metrics", {}), (record.get("analysis") or {}).get("lengths", [])
            if not points:
                continue
            first = min(points, key=lambda p: p["length"])
            curriculum = ((record.get("config") or {}).get("train") or {}).get("curriculum")
            segments = metrics.get("test/segments", "not recorded" if curriculum else "1 (no curriculum)")
            accuracy = metrics.get("test/accuracy")
            trainer = "–" if accuracy is None else f"{accuracy:.3f} ({metrics.get('test/samples', '?')})"
            at = f", {first['segment_length']}" if "segment_length" in first else ""
            lines.append(f"| {row['labels']['model']} | {record.get('seed', '?')} | {metrics.get('step', '?')} | "
                         f"{segments} | {trainer} | {first['accuracy']:.3f} ({first['n']}{at}) |")
    return lines


def _figure(sweeps, path: Path) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: figure skipped"
    fig, ax = plt.subplots(figsize=(6.0, 3.5))
    for model, per in sweeps.items():
        xs = sorted(per)
        stats = [_mean_std([p["accuracy"] for p in per[x]]) for x in xs]
        ax.errorbar(xs, [m for m, _ in stats], yerr=[0.0 if math.isnan(s) else s for _, s in stats], marker="o",
                    capsize=3, label=model)
    ax.axhline(1 / len(PLACES), linestyle=":", color="grey", label="guessing a place")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("exact match")
    ax.set_ylim(-0.05, 1.05)
    ax.legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=120), binary=True)
    plt.close(fig)
    return None
