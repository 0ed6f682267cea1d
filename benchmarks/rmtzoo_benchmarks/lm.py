"""Language modelling (docs/paper-settings.md 3): WikiText-103 Tables 2 and 5 (``wt103``), enwik8 Table 4 (``table4``),
and Figure 5's two views of the WikiText-103 segment-50 runs (``fig5a``, ``fig5b``).

Models, each cell labelled as the paper's tables label it (segment_length, memory, cache, bptt and, for
the 400k-step rows, variant ``2x``):

- Baseline: no memory, no cache;
- MemTr: memory tokens at the segment start only (``shared``), carried with BPTT-0, as the LM-RMT runs
  with ``mem_at_end`` off (docs/paper-settings.md 1.7);
- Tr-XL: a stop-gradient cache (``xl``); the same cache at evaluation ("to match RMT");
- RMT BPTT-k: read/write memory, exact truncated BPTT through k previous segments (``rmt``,
  ``bptt_rerun = "exact"`` in every preset); the released code's re-run started from the newest memory
  (docs/paper-settings.md 1.5), which ``recurrence.bptt_rerun = "newest_memory"`` reproduces for a
  user who wants to check whether a BPTT-k row depends on it;
- Tr-XL + RMT: both (``rmt_xl``); the ``paper`` preset adds A.5's auxiliary memory-token loss with
  weight 0.01 (``aux_loss_weight``; not in the released code, its positions unverified). Whether
  memory tokens attend to the cache: the ``paper`` preset sets ``memory_reads_cache = false``, the value
  of the only CSV run that has both a cache and memory (enwik8, cache 10 + memory 20; the WikiText-103
  Tr-XL + RMT rows are not in the CSV); ``small`` and ``smoke`` keep rmtzoo's default (true).

Memory starts from one shared N(0, 1) vector (``init = "single_vector"``), as in LM-RMT.

Presets:

- ``paper``: docs/paper-settings.md 3.1. WikiText-103: 16 layers, 10 heads, d_model 410, d_head 41, d_inner 2100,
  adaptive softmax with cutoffs 20k/40k/200k, batch 60 at segment 150 and 128 at segment 50. enwik8:
  12 layers, 8 heads, d_model 512, d_head 64, d_inner 2048, batch 22 at segment 512 and 64 at 128.
  Dropout 0.1, post-LN, Adam 2.5e-4 with cosine annealing to 0 and no warm-up (the CSV's scheduler;
  the paper says linear), clip 0.25, 200k steps on WikiText-103 (400k for ``2x``) and 400k on enwik8,
  evaluation every 4,000 steps with batch 10 over the whole stream, fp32 (every CSV row has fp16
  off; the paper does not state a precision). The corpora load from the Hub or ``task.path`` (set it with an override).
  Deviation: the enwik8 segment-512 Tr-XL row (1.071) was evaluated in 128-token segments with an eval
  cache of 896 (docs/paper-settings.md 3.1); rmtzoo has no separate evaluation segment, so the cell evaluates at its
  training segment and cache (512/512).
- ``small``: the embedded ``synthetic_lm`` corpus (200k/20k tokens, no download) with the paper's
  segment lengths, memory sizes, caches and BPTT depths, a 2-layer pre-LN model of width 64, Adam 1e-3
  cosine for 1,000 steps (2,000 for ``2x``), batch 16, fp32 (rmtzoo's default precision; it never ran
  bf16, so its config hashes stay). Its perplexities are NOT comparable to the
  paper's (another corpus, a tiny model); the paper column is there for the orderings and claims.
  The enwik8 spec reports ppl in this preset (the corpus is word level). Cell time unmeasured: one cell
  (wt103, RMT memory 10 BPTT-3, segment 50) had not finished after 150 s wall (64 s CPU) with
  OMP_NUM_THREADS=1 on the shared, heavily loaded 2-core machine.
- ``smoke``: ``synthetic_lm`` at 4,000/200 tokens, 1 layer, d_model 16, 2 steps, batch 4.

The ``fig5a`` and ``fig5b`` cells are the same configs as ``wt103``'s segment-50 block; results are
stored per benchmark, so running all three trains those configs again.
"""

from __future__ import annotations

from rmtzoo.bench import Benchmark, Cell, Claim, per_preset

LM_MATCH = ("segment_length", "memory", "cache", "bptt")
SMALL_NOTE = ("small runs on the embedded synthetic_lm corpus with a tiny model: its numbers are NOT comparable "
              "to the paper's; only the orderings and claims are")
SMOKE_NOTE = "smoke checks the plumbing (configs, runner, result files, report), not the numbers"

# (model, segment length, memory tokens or cache, cache, bptt, variant); cache/bptt None where a model has none
WT103 = [
    ("Baseline", 150, 0, None, None, ""),
    *[("MemTr", 150, m, None, None, "") for m in (10, 25, 75, 150)],
    ("Tr-XL", 150, 150, 150, None, ""), ("Tr-XL", 150, 150, 150, None, "2x"),
    ("Tr-XL", 150, 75, 75, None, ""), ("Tr-XL", 150, 75, 75, None, "2x"), ("Tr-XL", 150, 25, 25, None, ""),
    *[("RMT", 150, 10, None, k, "") for k in (0, 1, 2, 3)],
    *[("RMT", 150, 25, None, k, "") for k in (0, 1, 2)],
    ("Tr-XL+RMT", 150, 5, 70, 3, ""), ("Tr-XL+RMT", 150, 5, 75, 3, ""), ("Tr-XL+RMT", 150, 10, 140, 0, ""),
    ("Tr-XL+RMT", 150, 10, 150, 1, ""), ("Tr-XL+RMT", 150, 10, 150, 3, "2x"),
    ("Baseline", 50, 0, None, None, ""),
    *[("Tr-XL", 50, c, c, None, "") for c in (200, 100, 50, 25, 10, 5, 1)],
    *[("RMT", 50, m, None, k, "") for m, depths in ((1, 4), (5, 5), (10, 5), (25, 3), (50, 2)) for k in range(depths)],
]
TABLE2 = {("Baseline", 150, 0, None, None, ""), ("MemTr", 150, 10, None, None, ""), ("Tr-XL", 150, 150, 150, None, ""),
          ("Tr-XL", 150, 25, 25, None, ""), ("Tr-XL", 150, 75, 75, None, ""), ("RMT", 150, 10, None, 3, ""),
          ("RMT", 150, 25, None, 2, ""), ("Tr-XL+RMT", 150, 5, 75, 3, ""), ("Tr-XL+RMT", 150, 10, 150, 3, "2x"),
          ("Baseline", 50, 0, None, None, ""), *[("Tr-XL", 50, c, c, None, "") for c in (100, 50, 25, 10)],
          ("RMT", 50, 1, None, 1, ""), ("RMT", 50, 10, None, 3, "")}
ENWIK8 = [
    ("Tr-XL", 512, 512, 512, None, ""),
    ("Baseline", 128, 0, None, None, ""),  # an extra CSV run (1.402), not printed in Table 4
    *[("Tr-XL", 128, c, c, None, "") for c in (200, 100, 75, 40, 20, 10)],
    *[("RMT", 128, m, None, k, "") for m, ks in ((5, (1, 2)), (10, (1, 2)), (20, (0, 1, 2))) for k in ks],
]
SEG50 = [r for r in WT103 if r[1] == 50]
FIG5B = [r for r in SEG50 if r[0] != "Tr-XL" or r[2] <= 50]
FIG5B = [r for r in FIG5B if r[0] != "RMT" or r[4] <= 2]

CORPORA = {
    "wikitext103": {"task": {"kind": "wikitext103"}, "batch": {150: 60, 50: 128}, "steps": 200_000,
                    "arch": {"vocab_size": 267_735, "n_layer": 16, "n_head": 10, "d_model": 410, "d_head": 41,
                             "d_inner": 2100, "adaptive_cutoffs": [20_000, 40_000, 200_000]}},
    "enwik8": {"task": {"kind": "enwik8"}, "batch": {512: 22, 128: 64}, "steps": 400_000,
               "arch": {"vocab_size": 204, "n_layer": 12, "n_head": 8, "d_model": 512, "d_head": 64, "d_inner": 2048}},
}
SYNTHETIC_VOCAB = 372  # rmtzoo.tasks._lm_data.SYNTHETIC_VOCAB_SIZE


def model_blocks(model: str, memory: int, cache: int | None, bptt: int | None, *, preset: str = "small") -> dict:
    mem = {"kind": "read_write", "num_tokens": memory, "init": "single_vector"}
    if model == "Baseline":
        return {"memory": {"kind": "none"}, "recurrence": {"kind": "none"}}
    if model == "MemTr":
        return {"memory": {**mem, "kind": "shared"}, "recurrence": {"kind": "rmt", "bptt_depth": 0}}
    if model == "Tr-XL":
        return {"memory": {"kind": "none"}, "recurrence": {"kind": "xl", "cache_len": cache}}
    if model == "RMT":
        return {"memory": mem, "recurrence": {"kind": "rmt", "bptt_depth": bptt}}
    if model == "Tr-XL+RMT":
        recurrence = {"kind": "rmt_xl", "cache_len": cache, "bptt_depth": bptt}
        if preset == "paper":  # the only CSV run with cache and memory (enwik8 10 + 20) had read_mem_from_cache off
            recurrence["memory_reads_cache"] = False
            recurrence["aux_loss_weight"] = 0.01  # A.5: the combined model trained with the auxiliary loss
        return {"memory": mem, "recurrence": recurrence}
    raise ValueError(f"unknown model {model!r}")


def _base(preset: str, corpus: str, segment_length: int, variant: str) -> dict:
    longer = 2 if variant == "2x" else 1
    if preset == "paper":
        c = CORPORA[corpus]
        backbone = {"kind": "transformer_xl", **c["arch"], "dropout": 0.1}
        train = {"lr": 2.5e-4, "batch_size": c["batch"][segment_length], "steps": c["steps"] * longer,
                 "schedule": "cosine", "warmup_steps": 0, "grad_clip": 0.25, "precision": "fp32", "log_every": 200}
        return {"task": c["task"], "backbone": backbone, "train": train, "eval": {"every": 4_000, "batch_size": 10}}
    if preset == "small":
        backbone = {"kind": "transformer_xl", "vocab_size": SYNTHETIC_VOCAB, "n_layer": 2, "n_head": 4, "d_model": 64,
                    "d_head": 16, "d_inner": 256, "dropout": 0.1, "pre_lnorm": True}
        train = {"lr": 1e-3, "batch_size": 16, "steps": 1_000 * longer, "schedule": "cosine", "log_every": 100}
        return {"task": {"kind": "synthetic_lm"}, "backbone": backbone, "train": train,
                "eval": {"every": 250, "batch_size": 10}}
    backbone = {"kind": "transformer_xl", "vocab_size": SYNTHETIC_VOCAB, "n_layer": 1, "n_head": 2, "d_model": 16,
                "d_head": 8, "d_inner": 32, "dropout": 0.0}
    train = {"lr": 1e-3, "batch_size": 4, "steps": 2 * longer, "schedule": "constant", "log_every": 2}
    return {"task": {"kind": "synthetic_lm", "n_train_tokens": 4_000, "n_eval_tokens": 200}, "backbone": backbone,
            "train": train, "eval": {"every": 2, "batch_size": 2, "max_batches": 2}}


def lm_cell(preset: str, corpus: str, row, **extra_labels) -> Cell:
    model, length, memory, cache, bptt, variant = row
    # every cell has every key (empty where a model has none), so the table's columns line up
    labels = {"model": model, "segment_length": length, "memory": memory, "cache": "" if cache is None else cache,
              "bptt": "" if bptt is None else bptt, "variant": variant}
    config = {**_base(preset, corpus, length, variant), **model_blocks(model, memory, cache, bptt, preset=preset),
              "segment": {"length": length}}
    return Cell(labels={**labels, **extra_labels}, config=config)


def _series(row) -> str:
    model, _, memory, _, bptt, _ = row
    return f"RMT memory {memory}" if model == "RMT" else model


def wt103_cells(preset: str):
    return [lm_cell(preset, "wikitext103", r, table2="yes" if r in TABLE2 else "no") for r in WT103]


def table4_cells(preset: str):
    return [lm_cell(preset, "enwik8", r) for r in ENWIK8]


def fig5a_cells(preset: str):
    """x: visible context in training (docs/paper-settings.md 1.6): 50(k+1) for RMT BPTT-k, 50 + cache for Tr-XL."""
    out = []
    for r in SEG50:
        if r[0] == "Baseline":
            continue
        visible = 50 * (r[4] + 1) if r[0] == "RMT" else 50 + r[3]
        out.append(lm_cell(preset, "wikitext103", r, visible_context=visible, series=_series(r)))
    return out


def fig5b_cells(preset: str):
    return [lm_cell(preset, "wikitext103", r, series=f"RMT BPTT-{r[4]}" if r[0] == "RMT" else r[0]) for r in FIG5B]


def _sel(model, length, memory, **more):
    return {"model": model, "segment_length": length, "memory": memory, **more}


WT103_CLAIMS = (
    Claim("segment 150: RMT memory 10 BPTT-3 is about as good as Tr-XL cache 75 (within 2%)",
          (_sel("RMT", 150, 10, bptt=3), _sel("Tr-XL", 150, 75)), within=0.02),
    Claim("segment 150: RMT memory 25 BPTT-2 is about as good as Tr-XL cache 75 (within 2%)",
          (_sel("RMT", 150, 25, bptt=2), _sel("Tr-XL", 150, 75)), within=0.02),
    Claim("segment 50: RMT memory 1 BPTT-1 is at least as good as Tr-XL cache 10",
          (_sel("RMT", 50, 1, bptt=1), _sel("Tr-XL", 50, 10))),
    Claim("segment 50: Tr-XL cache 50 is about as good as RMT memory 5 BPTT-3 (within 2%)",
          (_sel("Tr-XL", 50, 50), _sel("RMT", 50, 5, bptt=3)), within=0.02),
    Claim("Tr-XL + RMT 150+10 BPTT-3 (2x steps) beats Tr-XL cache 150",
          (_sel("Tr-XL+RMT", 150, 10, bptt=3, variant="2x"), _sel("Tr-XL", 150, 150))),
    Claim("Tr-XL + RMT 75+5 BPTT-3 beats Tr-XL cache 75", (_sel("Tr-XL+RMT", 150, 5, cache=75), _sel("Tr-XL", 150, 75))),
    Claim("MemTr memory 10 is about as good as the Baseline (within 2%)",
          (_sel("MemTr", 150, 10), _sel("Baseline", 150, 0)), within=0.02),
    Claim("segment 50, memory 10: deeper BPTT helps (BPTT-4, 3, 2, 1, 0 best first)",
          tuple(_sel("RMT", 50, 10, bptt=k) for k in (4, 3, 2, 1, 0))),
)
TABLE4_CLAIMS = (
    Claim("RMT memory 5 BPTT-2 is about as good as Tr-XL cache 40 (within 1%)",
          (_sel("RMT", 128, 5, bptt=2), _sel("Tr-XL", 128, 40)), within=0.01),
    Claim("RMT memory 10 BPTT-2 beats Tr-XL cache 10", (_sel("RMT", 128, 10, bptt=2), _sel("Tr-XL", 128, 10))),
    Claim("Tr-XL cache 10 beats the Baseline", (_sel("Tr-XL", 128, 10), _sel("Baseline", 128, 0))),
)
FIG5A_CLAIMS = (
    Claim("RMT with one memory vector (BPTT-1) beats Tr-XL cache 10", (_sel("RMT", 50, 1, bptt=1), _sel("Tr-XL", 50, 10))),
    Claim("memory 5: deeper BPTT helps (BPTT-4, 3, 2, 1, 0 best first)",
          tuple(_sel("RMT", 50, 5, bptt=k) for k in (4, 3, 2, 1, 0))),
)
FIG5B_CLAIMS = (
    Claim("RMT memory 5 BPTT-2 is about as good as Tr-XL cache 50 (within 2%)",
          (_sel("RMT", 50, 5, bptt=2), _sel("Tr-XL", 50, 50)), within=0.02),
    Claim("memory 1 already helps: RMT memory 1 BPTT-1 beats the Baseline",
          (_sel("RMT", 50, 1, bptt=1), _sel("Baseline", 50, 0))),
)


def build_wt103(params) -> Benchmark:
    return Benchmark(
        name="wt103", artefact="T5",
        summary="Tables 2 and 5: WikiText-103 test ppl; Baseline, MemTr, Tr-XL, RMT BPTT-0..4, Tr-XL + RMT at "
                "segments 150 and 50 (column table2: the row is also in Table 2)",
        grids=per_preset(wt103_cells), metric="test/ppl", figure="table", match=LM_MATCH, claims=WT103_CLAIMS,
        notes={"small": SMALL_NOTE, "smoke": SMOKE_NOTE},
    )


def build_table4(params) -> Benchmark:
    return Benchmark(
        name="table4", artefact="T4",
        summary="Table 4: enwik8 test bpc; Tr-XL caches 10-512, RMT BPTT-0..2 with memory 5/10/20, Baseline",
        grids=per_preset(table4_cells), metric="test/bpc", metrics={"small": "test/ppl", "smoke": "test/ppl"},
        figure="table", match=LM_MATCH, claims=TABLE4_CLAIMS,
        notes={"small": SMALL_NOTE + " (ppl on a word-level corpus, not bpc)", "smoke": SMOKE_NOTE,
               "paper": "Tr-XL 512/512 is evaluated at segment 512 with cache 512; the paper's 1.071 used "
                        "128-token evaluation segments with cache 896 (docs/paper-settings.md 3.1)"},
    )


def build_fig5a(params) -> Benchmark:
    return Benchmark(
        name="fig5a", artefact="F5a",
        summary="Figure 5a: WikiText-103 segment 50, test ppl vs visible context in training, Tr-XL caches 1-200 "
                "and RMT BPTT-0..4 with memory 1-50 (one line per memory size)",
        grids=per_preset(fig5a_cells), metric="test/ppl", x="visible_context", line="series",
        x_label="visible context in training (tokens)", match=LM_MATCH, claims=FIG5A_CLAIMS,
        notes={"small": SMALL_NOTE, "smoke": SMOKE_NOTE},
    )


def build_fig5b(params) -> Benchmark:
    return Benchmark(
        name="fig5b", artefact="F5b",
        summary="Figure 5b: WikiText-103 segment 50, test ppl vs memory size 0-50 (bars): Baseline, Tr-XL, "
                "RMT BPTT-0/1/2",
        grids=per_preset(fig5b_cells), metric="test/ppl", x="memory", line="series", figure="bars",
        x_label="memory size (memory tokens or cache)", match=LM_MATCH, claims=FIG5B_CLAIMS,
        notes={"small": SMALL_NOTE, "smoke": SMOKE_NOTE},
    )


LM = {
    "wt103": ("Tables 2 and 5: WikiText-103 test perplexity, every model and memory setting", build_wt103),
    "table4": ("Table 4: enwik8 test bits per character", build_table4),
    "fig5a": ("Figure 5a: WikiText-103 test ppl vs visible context in training (segment 50)", build_fig5a),
    "fig5b": ("Figure 5b: WikiText-103 test ppl vs memory size (segment 50, bars)", build_fig5b),
}
