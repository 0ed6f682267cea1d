"""Figure 8 (docs/paper-settings.md 5): half-size memory, accuracy vs number of segments, Tr-XL vs RMT.

- ``fig8a`` (F8a): copy 24/48 (72 tokens) in 3 and 6 segments, memory (= cache) half the segment: 12, 6.
- ``fig8b`` (F8b): reverse 24/24 (48 tokens) in 2 and 4 segments, memory 12, 6.
- ``fig8c`` (F8c): reverse 120/120 (240 tokens, 8 symbols) in 2/4/6 segments of 120/60/40 with memory 60
  throughout (so only the 2-segment point has half-size memory), plus the Tr-XL-only point at 6 segments
  with memory 40, drawn as its own series. Which CSV runs the figure plotted is unverified (docs/paper-settings.md 5).

RMT carries memory with full BPTT inside a sample (the authors' code; docs/paper-settings.md 1.5).

Presets (``_samples.py``):

- ``paper``: 4 layers, 4 heads, d_model 128, d_head 64, d_inner 256, Adam 1e-4, plateau halving; F8a/b
  as Figure 3 (patience 8, evaluations every 12k steps over 50 batches, batch 32, data 100k/5k/10k) with
  the step budgets of those runs (copy 500k/700k, reverse 500k/850k); F8c as the long tasks (patience 5,
  minimum lr 1e-5, evaluations every 40k steps over 20 batches, batch 128) with each point's steps from
  ``runs.csv`` (RMT 500k/500k/1M, Tr-XL 300k/500k/500k, Tr-XL memory 40 1M). Per point where its
  runs differ (``PAPER_EVAL``): F8a's 3-segment Tr-XL evaluates every 4k steps, F8c's points have their
  own validation and test caps. Memory starts from one shared vector and the Tr-XL cache is carried
  across samples, as in the authors' code (``_samples.py``).
- ``small``: F8a copies 8 symbols (24 tokens) in 3/6 segments of 8/4 with memory 4/2; F8b reverses 12
  (24 tokens) in 2/4 segments of 12/6 with memory 6/3; F8c reverses 24 (48 tokens) in 2/4/6 segments of
  24/12/8 with memory 12 (Tr-XL also 8 at 6 segments). Unmeasured here.
- ``smoke``: the small preset's lengths with a 1-layer d_model 16 model, 4 steps.
"""

from __future__ import annotations

import functools

from rmtzoo.bench import Benchmark, per_preset
from rmtzoo_benchmarks._samples import SMALL_NOTE, SMOKE_NOTE, PaperTraining, base_config, cell

SHORT = PaperTraining(patience=8, min_lr=1e-6, eval_every=12_000, eval_batches=50, sizes=(100_000, 5_000, 10_000))
LONG = PaperTraining(patience=5, min_lr=1e-5, eval_every=40_000, eval_batches=20, sizes=(100_000, 10_000, 20_000))
ARCH = {"n_layer": 4, "n_head": 4, "d_model": 128, "d_head": 64, "d_inner": 256}

# name -> task kind, paper source length, small source length, vocabulary (n_symbols + 2), paper training,
# batch, and points (model, series, segments, paper length, paper memory, small length, small memory, steps)
SPECS = {
    "fig8a": ("copy", 24, 8, 12, SHORT, 32, [
        ("Tr-XL", "Tr-XL", 3, 24, 12, 8, 4, 500_000), ("RMT", "RMT", 3, 24, 12, 8, 4, 500_000),
        ("Tr-XL", "Tr-XL", 6, 12, 6, 4, 2, 700_000), ("RMT", "RMT", 6, 12, 6, 4, 2, 700_000),
    ]),
    "fig8b": ("reverse", 24, 12, 12, SHORT, 32, [
        ("Tr-XL", "Tr-XL", 2, 24, 12, 12, 6, 500_000), ("RMT", "RMT", 2, 24, 12, 12, 6, 500_000),
        ("Tr-XL", "Tr-XL", 4, 12, 6, 6, 3, 850_000), ("RMT", "RMT", 4, 12, 6, 6, 3, 850_000),
    ]),
    "fig8c": ("reverse", 120, 24, 10, LONG, 128, [
        ("Tr-XL", "Tr-XL", 2, 120, 60, 24, 12, 300_000), ("RMT", "RMT", 2, 120, 60, 24, 12, 500_000),
        ("Tr-XL", "Tr-XL", 4, 60, 60, 12, 12, 500_000), ("RMT", "RMT", 4, 60, 60, 12, 12, 500_000),
        ("Tr-XL", "Tr-XL", 6, 40, 60, 8, 12, 500_000), ("RMT", "RMT", 6, 40, 60, 8, 12, 1_000_000),
        ("Tr-XL", "Tr-XL memory 40", 6, 40, 40, 8, 8, 1_000_000),
    ]),
}
SUMMARIES = {
    "fig8a": "Figure 8a: copy 24/48 with memory = segment/2, accuracy vs 3/6 segments, Tr-XL vs RMT",
    "fig8b": "Figure 8b: reverse 24/24 with memory = segment/2, accuracy vs 2/4 segments, Tr-XL vs RMT",
    "fig8c": "Figure 8c: reverse 120/120 (240 tokens), accuracy vs 2/4/6 segments with memory 60, Tr-XL vs RMT",
}


# Per point of the paper preset, where its runs (runs.csv, the first listed where two differ) did not use
# the setting's evaluation: F8a's 3-segment Tr-XL evaluated every 4k steps; F8c's validation and test
# caps (max_eval_steps, max_test_steps; None: the test takes the validation cap).
PAPER_EVAL = {
    ("fig8a", "Tr-XL", 3): {"every": 4_000},
    **{("fig8c", m, n): {"max_batches": 20, "test_max_batches": 50} for m in ("Tr-XL", "RMT") for n in (2, 4)},
    ("fig8c", "Tr-XL", 6): {"max_batches": 20, "test_max_batches": 50},
    ("fig8c", "RMT", 6): {"max_batches": 3},
    ("fig8c", "Tr-XL memory 40", 6): {"max_batches": 3, "test_max_batches": 10},
}


def cells(name: str, preset: str):
    kind, src_len, small_src, vocab, paper, batch, points = SPECS[name]
    task = {"kind": kind, "src_len": src_len if preset == "paper" else small_src, "n_symbols": vocab - 2}
    base = base_config(preset, task=task, arch={"vocab_size": vocab, **ARCH}, paper=paper)
    out = []
    for model, series, n, length, memory, small_length, small_memory, steps in points:
        if preset != "paper":
            length, memory = small_length, small_memory
        extra = None
        if preset == "paper":
            extra = {"train": {"steps": steps, "batch_size": batch}, "eval": PAPER_EVAL.get((name, series, n), {})}
        labels = {"series": series, "segments": n, "segment_length": length, "memory": memory}
        out.append(cell(base, labels, model=model, memory=memory, segment_length=length, overrides=extra,
                        preset=preset))
    return out


def _builder(name: str):
    def build(params) -> Benchmark:
        return Benchmark(
            name=name, artefact=name.replace("fig", "F"), summary=SUMMARIES[name],
            grids=per_preset(functools.partial(cells, name)),
            x="segments", line="series", ordering=("RMT", "Tr-XL"), chance=1 / (SPECS[name][3] - 2),  # 1 / symbols
            notes={"smoke": SMOKE_NOTE + "; lengths as in small", "small": SMALL_NOTE},
        )

    return build


FIG8 = {name: (SUMMARIES[name], _builder(name)) for name in SPECS}
