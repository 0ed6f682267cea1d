"""Figures 6 and 9 (docs/paper-settings.md section 5, row F6/F9 of section 8): attention maps of memory reads and writes,
drawn from trained models. Each cell trains one model, then ``analyze`` records its attention on test
samples (:func:`rmtzoo.analysis.attention_maps`), stores one sample's maps beside the result file and
measures, per panel, how the selected block of the map is spread; ``draw`` lays the maps out like the
paper's panels and writes what was measured.

Figure 6 cells (task unverified where the paper does not name it: copy, which both models solve at these
sizes in Figure 3):

- (a, b) RMT, segment 24 / memory 24, on copy (24/48) and on reverse (24/24): (a) the write memory reading
  the source segment, "copy writes in order, reverse in reversed order"; (b) the answer segment reading
  the read memory;
- (c) RMT, segment 8 / memory 8 on copy (9 segments): the write memory rewriting the read memory;
- (d) Tr-XL, segment 24 / cache 24 on copy: the answer segment's diagonal reads from the cache.

Figure 9 (Appendix B): a 12-token segment with 6 memory slots, reverse 24/24 in 4 segments, (a) RMT
memory 6 (compression into memory, read back in the answer) vs (b) Tr-XL cache 6.

What is measured, per panel block ``query rows x key columns`` (averaged over the analysed test samples
and the panel's segments, per layer and head): the block's share of the rows' attention, and within the
block the fraction on the diagonal band (row j's keys ``[j*K/Q, (j+1)*K/Q)``: exactly the diagonal for a
square block) and on the anti-diagonal band. The head shown is the one with the most attention mass on
the panel's expected band, else on the block (a selection: the others are in the stored file).

Presets:

- ``paper``: docs/paper-settings.md 2's model and training (4 layers, 4 heads, d_model 128, post-LN, Adam 1e-4 with the
  plateau schedule, batch 32, 100k/5k/10k data) and Figure 3's step budgets for the same settings
  (copy 3 segments 400k, reverse 2 segments 400k, copy 9 segments 900k; Figure 9's reverse 4 x 12 with
  memory 6 takes Figure 3's reverse-4 budget, 850k: the paper gives none for it).
- ``small``: CPU-sized, the paper's segment/memory ratios on shorter tasks (copy 8/16 with segment 8 /
  memory 8 for (a, b, d) and 4 / 4 in 6 segments for (c); reverse 8/8 in 2 segments of 8 for (a, b) and in
  4 segments of 4 with memory 2 for Figure 9), 2-layer pre-LN width-64 models as in
  ``examples/copy_small.toml``, Adam 2e-3, at most 2,500 steps, stop at 0.999 validation accuracy. Measured:
  the RMT copy 8/8 cell took 201 s with OMP_NUM_THREADS=1 on a 2-core CPU shared with other jobs (it
  stopped at 0.999 validation accuracy after 1,000 steps; test accuracy 0.9999; analysis included).
- ``smoke``: seconds per cell (1 layer, d_model 16, 4 steps); checks the plumbing, not the patterns.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from rmtzoo.bench import Benchmark, Cell, per_preset
from rmtzoo_benchmarks._samples import cache_scope, memory_init

N_SAMPLES = 32  # test samples the measures average over (fewer where the test split is smaller)


@dataclass(frozen=True)
class View:
    """One panel's block: ``query`` rows over ``key`` columns, in the ``segments`` selected (``source``:
    segments wholly before the answer; ``answer``: the first segment wholly inside it; ``later``: every
    segment after the first), and the band the paper's picture shows (None: no claim about a band)."""

    panel: str
    query: str
    key: str
    segments: str
    expected: str | None
    caption: str


FIG6_VIEWS = {
    ("RMT", "copy"): (
        View("a", "write memory", "segment", "source", "diagonal", "RMT copy: writing the source to memory"),
        View("b", "segment", "read memory", "answer", None, "RMT copy: reading memory into the output"),
    ),
    ("RMT", "reverse"): (
        View("a", "write memory", "segment", "source", "anti-diagonal", "RMT reverse: writing the source to memory"),
        View("b", "segment", "read memory", "answer", None, "RMT reverse: reading memory into the output"),
    ),
    ("RMT", "copy", "c"): (
        View("c", "write memory", "read memory", "later", None, "RMT copy, many segments: rewriting read into write memory"),
    ),
    ("Tr-XL", "copy"): (
        View("d", "segment", "cache", "answer", "diagonal", "Tr-XL copy: reading the cache"),
    ),
}
FIG9_VIEWS = {
    "RMT": (
        View("a", "write memory", "segment", "source", None, "RMT reverse: compressing a segment into memory"),
        View("a", "segment", "read memory", "answer", None, "RMT reverse: reading memory into the output"),
    ),
    "Tr-XL": (View("b", "segment", "cache", "answer", None, "Tr-XL reverse: reading the cache"),),
}


def views_for(labels) -> tuple[View, ...]:
    if labels["figure"] == "9":
        return FIG9_VIEWS[labels["model"]]
    key = (labels["model"], labels["task"], "c") if labels["panel"] == "c" else (labels["model"], labels["task"])
    return FIG6_VIEWS[key]


# -- grids ---------------------------------------------------------------------------------------------
PAPER_ARCH = {"vocab_size": 12, "n_layer": 4, "n_head": 4, "d_model": 128, "d_head": 64, "d_inner": 256}
SMALL_ARCH = {"vocab_size": 12, "n_layer": 2, "n_head": 4, "d_model": 64, "d_head": 16, "d_inner": 128}
SMOKE_ARCH = {"vocab_size": 12, "n_layer": 1, "n_head": 2, "d_model": 16, "d_head": 8, "d_inner": 32}

# (figure, panel, model, task, src_len per preset, segment length per preset, memory per preset, paper steps)
FIG6_CELLS = [
    ("6", "a+b", "RMT", "copy", {"paper": 24, "small": 8, "smoke": 4}, {"paper": 24, "small": 8, "smoke": 4},
     {"paper": 24, "small": 8, "smoke": 4}, 400_000),
    ("6", "a+b", "RMT", "reverse", {"paper": 24, "small": 8, "smoke": 4}, {"paper": 24, "small": 8, "smoke": 4},
     {"paper": 24, "small": 8, "smoke": 4}, 400_000),
    ("6", "c", "RMT", "copy", {"paper": 24, "small": 8, "smoke": 4}, {"paper": 8, "small": 4, "smoke": 2},
     {"paper": 8, "small": 4, "smoke": 2}, 900_000),
    ("6", "d", "Tr-XL", "copy", {"paper": 24, "small": 8, "smoke": 4}, {"paper": 24, "small": 8, "smoke": 4},
     {"paper": 24, "small": 8, "smoke": 4}, 400_000),
]
FIG9_CELLS = [
    ("9", panel, model, "reverse", {"paper": 24, "small": 8, "smoke": 4}, {"paper": 12, "small": 4, "smoke": 2},
     {"paper": 6, "small": 2, "smoke": 1}, 850_000)
    for panel, model in (("a", "RMT"), ("b", "Tr-XL"))
]


def _base(preset: str) -> dict:
    if preset == "paper":
        return {
            "task": {"train_size": 100_000, "valid_size": 5_000, "test_size": 10_000},
            "backbone": {"kind": "transformer_xl", **PAPER_ARCH, "dropout": 0.1, "pre_lnorm": False},
            "train": {"lr": 1e-4, "batch_size": 32, "schedule": "plateau", "plateau_patience": 8,
                      "plateau_factor": 0.5, "min_lr": 1e-6, "grad_clip": 0.25, "log_every": 1000},
            "eval": {"every": 12_000, "batch_size": 32, "max_batches": 50},
        }
    if preset == "small":
        return {
            "task": {"train_size": 20_000, "valid_size": 1_000, "test_size": 2_000},
            "backbone": {"kind": "transformer_xl", **SMALL_ARCH, "dropout": 0.1, "pre_lnorm": True},
            "train": {"lr": 2e-3, "batch_size": 32, "steps": 2_500, "schedule": "constant", "stop_at": 0.999,
                      "log_every": 100},
            "eval": {"every": 250, "batch_size": 250, "max_batches": 2},
        }
    return {
        "task": {"train_size": 64, "valid_size": 16, "test_size": 16},
        "backbone": {"kind": "transformer_xl", **SMOKE_ARCH, "dropout": 0.0},
        "train": {"lr": 1e-3, "batch_size": 8, "steps": 4, "schedule": "constant", "log_every": 2},
        "eval": {"every": 4, "batch_size": 16, "max_batches": 1},
    }


def _cells(rows, preset: str) -> list[Cell]:
    cells = []
    for figure, panel, model, task, src_len, length, memory, steps in rows:
        config = _base(preset)
        config["task"] = {"kind": task, "src_len": src_len[preset], **config["task"]}
        config["segment"] = {"length": length[preset]}
        if model == "RMT":
            config["memory"] = {"kind": "read_write", "num_tokens": memory[preset], **memory_init(preset)}
            config["recurrence"] = {"kind": "rmt"}
        else:
            config["memory"] = {"kind": "none"}
            config["recurrence"] = {"kind": "xl", "cache_len": memory[preset], **cache_scope(preset)}
        if preset == "paper":
            config["train"]["steps"] = steps
        n_tokens = 3 * src_len[preset] if task == "copy" else 2 * src_len[preset]
        labels = {"figure": figure, "panel": panel, "model": model, "task": task,
                  "segments": n_tokens // length[preset], "segment_length": length[preset], "memory": memory[preset]}
        cells.append(Cell(labels=labels, config=config))
    return cells


# -- analysis ------------------------------------------------------------------------------------------
def _segment_indices(view: View, maps, answer_start: int) -> list[int]:
    bounds, at = [], 0
    for m in maps:
        bounds.append((at, at + m.segment_ids.shape[1]))
        at = bounds[-1][1]
    if view.segments == "source":
        chosen = [i for i, (_, end) in enumerate(bounds) if end <= answer_start]
    elif view.segments == "answer":
        chosen = [i for i, (start, _) in enumerate(bounds) if start >= answer_start][:1]
    else:
        chosen = list(range(1, len(bounds)))
    return [i for i in chosen if view.key in maps[i].keys and view.query in maps[i].queries]


def band(n_rows: int, n_keys: int, *, anti: bool = False):
    """Bool ``[n_rows, n_keys]``: row j's share of the keys in order (reversed order with ``anti``)."""
    import torch

    q = torch.arange(n_rows)[:, None]
    k = torch.arange(n_keys)[None]
    if anti:
        k = n_keys - 1 - k
    return (k * n_rows < (q + 1) * n_keys) & (q * n_keys < (k + 1) * n_rows)


def measure(block) -> dict:
    """block ``[L, B, H, Q, K]`` of attention probabilities -> per layer and head ``[L][H]``: ``share`` (the
    block's part of the rows' attention), ``diagonal`` and ``anti_diagonal`` (fractions of the block's
    mass on each band), means over samples and rows with any mass on the block."""
    n_rows, n_keys = block.shape[-2:]
    mass = block.sum(-1)  # [L, B, H, Q]
    live = (mass > 1e-6).float()
    out = {"share": mass.mean(dim=(1, 3))}  # [L, H]
    for name, anti in (("diagonal", False), ("anti_diagonal", True)):
        on_band = (block * band(n_rows, n_keys, anti=anti)).sum(-1)  # [L, B, H, Q]
        fraction = on_band / mass.clamp_min(1e-12) * live
        out[name] = fraction.sum(dim=(1, 3)) / live.sum(dim=(1, 3)).clamp_min(1)  # [L, H]
    out["chance"] = float(band(n_rows, n_keys).float().mean())
    return out


def classify(diagonal: float, anti: float) -> str:
    """The measured pattern: a band holding at least half the block's mass and twice the other band's."""
    if diagonal >= 0.5 and diagonal >= 2 * anti:
        return "diagonal"
    if anti >= 0.5 and anti >= 2 * diagonal:
        return "anti-diagonal"
    return "neither"


def analyze(model, task, *, labels, path) -> dict:
    """Attention maps of the trained model on the first test samples; sample 0's maps are stored as
    ``<path>.attention.npz`` (float16, one ``[layers, heads, Q, K]`` array per segment)."""
    import numpy as np

    from rmtzoo._io import atomic_write
    from rmtzoo.analysis import attention_maps

    inputs, _ = task.tensors("test")
    maps = attention_maps(model, inputs[:N_SAMPLES])
    arrays = {f"segment_{m.index}": m.probs[:, 0].numpy().astype(np.float16) for m in maps}
    file = path.with_name(f"{path.name}.attention.npz")
    atomic_write(file, lambda fh: np.savez_compressed(fh, **arrays), binary=True)
    views = []
    for view in views_for(labels):
        chosen = _segment_indices(view, maps, task.answer_start)
        if not chosen:
            continue
        parts = [measure(maps[i].block(view.query, view.key)) for i in chosen]
        m = {k: sum(p[k] for p in parts) / len(parts) for k in ("share", "diagonal", "anti_diagonal")}
        pattern = {"diagonal": "diagonal", "anti-diagonal": "anti_diagonal"}.get(view.expected)
        score = m["share"] * (m[pattern] if pattern else 1.0)  # [L, H]: mass on the expected band, or on the block
        layer, head = divmod(int(score.argmax()), score.shape[1])
        diag, anti = float(m["diagonal"][layer, head]), float(m["anti_diagonal"][layer, head])
        views.append({
            "panel": view.panel, "caption": view.caption, "query": view.query, "key": view.key,
            "segments": chosen, "shown_segment": chosen[0], "expected": view.expected,
            "layer": layer, "head": head, "share": float(m["share"][layer, head]), "diagonal": diag,
            "anti_diagonal": anti, "chance": parts[0]["chance"], "pattern": classify(diag, anti),
            "max_diagonal": float(m["diagonal"].max()), "max_anti_diagonal": float(m["anti_diagonal"].max()),
            "per_head": {k: [[round(float(x), 4) for x in row] for row in m[k]] for k in m},
        })
    layout = [{"index": m.index, "queries": {k: list(v) for k, v in m.queries.items()},
               "keys": {k: list(v) for k, v in m.keys.items()}} for m in maps]
    return {"file": file.name, "n_samples": int(maps[0].probs.shape[1]), "layout": layout, "views": views,
            "sample_ids": inputs[0].tolist()}


# -- the benchmarks ------------------------------------------------------------------------------------
def _draw(rows, *, out_dir, results_folder):
    from rmtzoo_benchmarks._attention_figures import draw

    return draw(rows, out_dir=out_dir, results_folder=results_folder)


def _benchmark(name, artefact, summary, cells):
    return Benchmark(
        name=name, artefact=artefact, summary=summary,
        grids=per_preset(functools.partial(_cells, cells)),
        x="segments", line="model", metric="test/accuracy", analyze=analyze, draw=_draw,
        notes={"smoke": "smoke checks the plumbing, not the patterns"},
    )


FIG6_SUMMARY = ("Figure 6: attention maps of trained models: RMT 24/24 writing (copy in order, reverse reversed) "
                "and reading memory, RMT 8/8 rewriting memory, Tr-XL 24/24 reading its cache")
FIG9_SUMMARY = "Figure 9: reverse in 4 segments of 12 with 6 memory slots, RMT vs Tr-XL attention maps"

ATTENTION_MAPS = {
    "fig6": (FIG6_SUMMARY, lambda params: _benchmark("fig6", "F6", FIG6_SUMMARY, FIG6_CELLS)),
    "fig9": (FIG9_SUMMARY, lambda params: _benchmark("fig9", "F9", FIG9_SUMMARY, FIG9_CELLS)),
}
