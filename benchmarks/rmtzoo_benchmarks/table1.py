"""Table 1 (docs/paper-settings.md 2.6): quadratic equations, exact-answer accuracy: everything
after the equation (the 150 target positions from position 30) is generated greedily with no teacher
forcing, for every model (``task.decoding = "greedy"``), and a sample counts only when its whole
answer slot is right.

Models: Baseline on the whole 180-token sample (1 segment), Transformer-XL on 6 segments of 30 with a
cache of 30, RMT on 6 segments of 30 with 30 memory tokens. The paper's claim: RMT matches the
full-context Baseline (0.99) and beats Tr-XL (0.93).

Presets (``_samples.py``):

- ``paper``: 6 layers, 6 heads, d_model 128, d_head 64, d_inner 256; Adam 1e-4, plateau halving with
  patience 10 (evaluations every 12k steps, 10 batches: the cap most CSV runs used), 600k steps, batch
  32, data 100k/10k/20k; memory from one shared vector and the Tr-XL cache carried across samples, as in
  the authors' code (``_samples.py``).
- ``small``: the task cannot shrink (its 180-token slot layout is fixed), so only the model does: 2
  layers of width 64, the small training of ``_samples.py``. Unmeasured: one cell (RMT, 2,500 steps of
  6 segments with greedy evaluation) is well over the 2-minute budget for a measurement here.
- ``smoke``: the paper's layout, a 1-layer d_model 16 model, 4 steps.
"""

from __future__ import annotations

from rmtzoo.bench import Benchmark, Claim, per_preset
from rmtzoo_benchmarks._samples import SMALL_NOTE, SMOKE_NOTE, PaperTraining, base_config, cell

ARCH = {"vocab_size": 24, "n_layer": 6, "n_head": 6, "d_model": 128, "d_head": 64, "d_inner": 256}
PAPER = PaperTraining(patience=10, min_lr=1e-6, eval_every=12_000, eval_batches=10, sizes=(100_000, 10_000, 20_000))
POINTS = [("Baseline", 1, 180, 0), ("Tr-XL", 6, 30, 30), ("RMT", 6, 30, 30)]  # model, segments, length, memory


def cells(preset: str):
    base = base_config(preset, task={"kind": "quadratic_equations", "decoding": "greedy"}, arch=ARCH, paper=PAPER)
    extra = {"train": {"steps": 600_000}} if preset == "paper" else None
    return [cell(base, {"segments": n, "segment_length": length, "memory": memory}, model=model, memory=memory,
                 segment_length=length, overrides=extra, preset=preset)
            for model, n, length, memory in POINTS]


def build(params) -> Benchmark:
    return Benchmark(
        name="table1", artefact="T1",
        summary="Table 1: quadratic equations, exact-answer accuracy; Baseline 1x180 vs Tr-XL 6x30 (cache 30) "
                "vs RMT 6x30 (memory 30)",
        grids=per_preset(cells),
        figure="table", ordering=("RMT", "Tr-XL"),
        claims=(Claim("RMT (6 segments) matches the full-context Baseline", ({"model": "RMT"}, {"model": "Baseline"}),
                      within=0.02),),
        notes={"smoke": SMOKE_NOTE, "small": SMALL_NOTE},
    )
