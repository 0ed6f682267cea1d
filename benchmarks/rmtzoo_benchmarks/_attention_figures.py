"""The report side of Figures 6 and 9: heatmaps from the attention maps a cell's ``analyze`` stored, and
the markdown naming each panel with what was measured (see :mod:`rmtzoo_benchmarks.attention_maps`).

Two figures per benchmark: ``<name>.png``, one panel per measured block with the whole map of the shown
segment (query rows x key columns, block borders drawn and named, the panel's block outlined), and
``<name>-blocks.png``, the panel blocks alone, as the paper crops them. Panels are lettered a, b, c, ... in
order (each title names the paper's panel it stands for), each has a colour bar, and its caption gives the
preset's real sizes and the model's test accuracy; a model that did not learn its task (test accuracy
below ``LEARNED``) is said to be untrained in its panel title and in the report's caption.
"""

from __future__ import annotations

from pathlib import Path

SHORT = {"cache": "cache", "read memory": "read", "segment": "segment", "write memory": "write"}
LEARNED = 0.9  # test accuracy from which a model counts as having learned the task its map is drawn from


def _record(row) -> dict | None:
    """The analysed result of the lowest finished seed of a cell (the one whose config matched)."""
    records = [r for r in row["records"] if "analysis" in r and r.get("seed") in row["seeds"]]
    return min(records, key=lambda r: r.get("seed", 0)) if records else None


def _panels(rows, results_folder: Path) -> tuple[list[dict], list[str]]:
    """Per measured view: its numbers, the cell's labels and the shown map ``[Q, K]``; and what is missing."""
    import numpy as np

    panels, missing = [], []
    for row in rows:
        cell = ", ".join(f"{k}={v}" for k, v in row["labels"].items() if k not in ("figure", "panel"))
        record = _record(row)
        if record is None:
            missing.append(f"{cell}: no analysed result yet")
            continue
        analysis = record["analysis"]
        path = Path(results_folder) / analysis["file"]
        try:
            arrays = np.load(path)
        except OSError:
            missing.append(f"{cell}: {path.name} is missing")
            continue
        for view in analysis["views"]:
            seg = view["shown_segment"]
            layout = analysis["layout"][seg]
            probs = arrays[f"segment_{seg}"][view["layer"], view["head"]].astype(np.float32)  # [Q, K]
            task = record.get("config", {}).get("task", {})
            panels.append({**view, "cell": cell, "labels": row["labels"], "seed": record.get("seed"),
                           "map": probs, "layout": layout, "n_samples": analysis["n_samples"],
                           "paper_panel": f"{row['labels'].get('figure', '')}{view['panel']}",
                           "sizes": _sizes(row["labels"], task),
                           "accuracy": record.get("metrics", {}).get("test/accuracy")})
    for i, panel in enumerate(panels):  # unique letters: the paper reuses (a) for copy and reverse
        panel["letter"] = chr(ord("a") + i) if i < 26 else str(i + 1)
    return panels, missing


def _sizes(labels, task) -> str:
    """The cell's real sizes: task, source length, segments, segment length and memory or cache."""
    store = "cache" if labels.get("model") == "Tr-XL" else "memory"
    return (f"{task.get('kind', labels.get('task', ''))} {task.get('src_len', '?')} tokens, {labels.get('segments')} "
            f"segments of {labels.get('segment_length')}, {store} {labels.get('memory')}")


def _learned(panel) -> bool:
    return panel["accuracy"] is not None and panel["accuracy"] >= LEARNED


def _heatmap(ax, panel, *, crop: bool) -> None:
    layout, probs = panel["layout"], panel["map"]
    (q0, q1), (k0, k1) = layout["queries"][panel["query"]], layout["keys"][panel["key"]]
    shown = probs[q0:q1, k0:k1] if crop else probs
    image = ax.imshow(shown, cmap="viridis", vmin=0.0, vmax=max(float(shown.max()), 1e-6), aspect="auto",
                      interpolation="nearest")
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.03, label="attention")
    if crop:
        ax.set_ylabel(f"{panel['query']} (query)")
        ax.set_xlabel(f"{panel['key']} (key)")
    else:
        for blocks, line, ticks, labels in ((layout["keys"], ax.axvline, ax.set_xticks, ax.set_xticklabels),
                                            (layout["queries"], ax.axhline, ax.set_yticks, ax.set_yticklabels)):
            for start, _ in list(blocks.values())[1:]:
                line(start - 0.5, color="white", linewidth=0.8)
            ticks([(a + b - 1) / 2 for a, b in blocks.values()])
            labels([SHORT.get(n, n) for n in blocks], fontsize=7)
        from matplotlib.patches import Rectangle

        ax.add_patch(Rectangle((k0 - 0.5, q0 - 0.5), k1 - k0, q1 - q0, fill=False, edgecolor="red", linewidth=1.2))
    accuracy = "–" if panel["accuracy"] is None else f"{panel['accuracy']:.3f}"
    state = "" if _learned(panel) else ", NOT LEARNED"
    ax.set_title(f"({panel['letter']}) [paper {panel['paper_panel']}] {panel['caption']}\n{panel['sizes']}\n"
                 f"layer {panel['layer']} head {panel['head']}, segment {panel['shown_segment']}, "
                 f"test acc {accuracy}{state}", fontsize=7)


def _figure(panels, path: Path, *, crop: bool, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rmtzoo._io import atomic_write

    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.8 * cols, 4.2 * rows), squeeze=False)
    for ax, panel in zip(axes.flat, panels, strict=False):
        _heatmap(ax, panel, crop=crop)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=110), binary=True)
    plt.close(fig)


def _claims(panels) -> list[str]:
    lines = []
    for p in panels:
        if p["expected"] is None:
            continue
        verdict = "holds" if p["pattern"] == p["expected"] else "does NOT hold"
        if not _learned(p):
            verdict += " (the model did not learn the task: not evidence either way)"
        lines.append(f"- ({p['letter']}, paper {p['paper_panel']}) {p['caption']}: the paper's picture is {p['expected']}; measured "
                     f"{p['pattern']} (diagonal {p['diagonal']:.3f}, anti-diagonal {p['anti_diagonal']:.3f}, "
                     f"chance {p['chance']:.3f}, layer {p['layer']} head {p['head']}): {verdict}")
    return lines


def _caption(panels) -> str:
    """The figure's caption: each panel's real sizes and accuracy, and whether its model learned the task."""
    parts = [f"({p['letter']}) paper {p['paper_panel']}: {p['caption']}; {p['sizes']}; test accuracy "
             + ("–" if p["accuracy"] is None else f"{p['accuracy']:.3f}") for p in panels]
    text = "Figure: " + ". ".join(parts) + "."
    untrained = sorted({p["labels"].get("model", "?") for p in panels if not _learned(p)})
    if untrained:
        text += (f" **{' and '.join(untrained)} did not learn the task** (test accuracy below {LEARNED}): "
                 "their maps show the attention of a model that has not learned it, and say nothing about the "
                 "paper's picture.")
    return text


def draw(rows, *, out_dir: Path, results_folder: Path) -> str:
    """Write ``<name>.png`` and ``<name>-blocks.png`` under ``out_dir``; return the report's markdown."""
    out_dir = Path(out_dir)
    name, preset = Path(results_folder).parent.name, Path(results_folder).name
    panels, missing = _panels(rows, results_folder)
    out = ["## Panels", ""]
    if not panels:
        return "\n".join([*out, "No analysed cell yet: no figure.", *[f"- {m}" for m in missing]]) + "\n"
    try:
        seeds = sorted({p["seed"] for p in panels})
        title = (f"Figure {panels[0]['labels'].get('figure', '')}: attention maps, preset {preset}, seed "
                 f"{'/'.join(map(str, seeds))} of each cell (one test sample)")
        _figure(panels, out_dir / f"{name}.png", crop=False, title=title)
        _figure(panels, out_dir / f"{name}-blocks.png", crop=True, title=title)
        out += [f"![whole maps]({name}.png)", "", f"![panel blocks]({name}-blocks.png)", "", _caption(panels), ""]
    except ImportError:
        out += ["Figures: matplotlib is not installed (pip install matplotlib): skipped.", ""]
    out += [
        f"Each panel: one test sample's attention, the head with the most mass on the expected band (else on "
        f"the block); numbers: means over the first {panels[0]['n_samples']} test samples and the panel's "
        "segments, for the head shown. share: the block's part of the rows' attention; diagonal / "
        "anti-diagonal: the part of the block's mass on that band (row j: keys j*K/Q to (j+1)*K/Q); "
        "pattern: a band with at least half the mass and twice the other's.",
        "",
        "| panel | paper's panel | cell | block (query → key) | segments | layer, head | share | diagonal "
        "| anti-diagonal | chance | pattern | paper |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in panels:
        out.append(
            f"| ({p['letter']}) | {p['paper_panel']} | {p['cell']} | {p['query']} → {p['key']} "
            f"| {', '.join(map(str, p['segments']))} "
            f"| {p['layer']}, {p['head']} | {p['share']:.3f} | {p['diagonal']:.3f} | {p['anti_diagonal']:.3f} "
            f"| {p['chance']:.3f} | {p['pattern']} | {p['expected'] or '–'} |")
    claims = _claims(panels)
    if claims:
        out += ["", "The paper's pictures, as measured:", "", *claims]
    if missing:
        out += ["", "Not drawn:", "", *[f"- {m}" for m in missing]]
    return "\n".join(out) + "\n"
