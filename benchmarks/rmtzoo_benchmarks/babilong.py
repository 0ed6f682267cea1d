"""``babilong``: train short, evaluate long. Each model trains on the ``babilong`` task at a few segments
(with the segment curriculum: the training sample cut into 1, then 2, then 4 segments as validation
accuracy passes ``advance_at``) and is then evaluated, with no gradient, at context lengths doubling from
the training length up to ``eval_up_to`` tokens (1,000,000 at most, the last point exactly 1M).

Models: RMT (read/write memory, full BPTT inside a sample), ARMT (the same plus a per-layer associative
memory), Tr-XL (a stop-gradient cache of one segment per layer) and full attention (one segment holding
the whole sample, no memory; evaluated only as far as ``eval_up_to`` of its cell, since its attention
grows with the square of the length).

The evaluation runs segment by segment at flat memory: what is carried is the memory tokens, the
associative matrices or the Tr-XL cache, never the past tokens, and only the last position's logits are
computed. Per length it records exact-match accuracy over ``n`` test samples (``n = eval_tokens // L``,
at least ``eval_min_samples``, at most 64) evenly spaced over the test split (:func:`sample_indices`: the
same questions for every model and seed at a length, not the split's first ``n``, whose answers repeat),
run ``eval_batch`` samples at a time (a recurrent model's
memory does not grow with the length, so neither does its batch; full attention's batch shrinks with
``L * L``), tokens/s and the peak RSS while evaluating that length (Linux: the peak is reset per length),
and shows a tqdm bar per length once a length has more than 64 segments.

Presets:

- ``smoke``: 1 layer, d_model 16, qa1 with 2 facts in 64 tokens, segments of 16, 4 steps; evaluated to
  256 tokens. Checks the plumbing, not the numbers.
- ``small``: 2 layers, d_model 32, qa1 with one fact per story (no distractor: the question names the one
  person who moved, so the model must carry that place from wherever it sits to the question) in 256
  tokens, segments of 64, memory 4; batch 32, AdamW 2e-3, at most 1,000 steps with the curriculum 1, 2,
  4 segments, stopping at 0.99 validation accuracy at 4 segments. RMT and ARMT get up to 3,000 steps:
  in 1,000 some seeds of each never left the plateau at 1 segment (the loss of guessing a place; every
  model starts on it, and a 2,000-step ARMT pilot left it at step 1,800). Tr-XL and full attention
  left it in every seed within 1,000 steps and keep that budget. Evaluated to 1M tokens (full attention
  to 8,192) with 64 test samples per seed up to 4,096 tokens, then ``262,144 / L``, at least 8 per seed
  (from 32,768 on, 1M included).
  Pilots on this CPU chose it: with two facts (one distractor) the 2-layer models had not learned which
  person the question names after 600 steps (benchmarks/reports/small/README.md has the record).
- ``paper``: the sizes of BABILong's RMT/ARMT runs, in this library's terms: a GPT-2-sized decoder (12
  layers, d_model 768), segments of 1,024 with 16 memory tokens, qa1-style training at 16 segments with
  the curriculum 1, 2, 4, 8, 16, AdamW 1e-4; evaluated to 1M tokens. Not run here.
"""

from __future__ import annotations

import math
import resource
import sys
import time

import torch

from rmtzoo.bench import Benchmark, Cell, per_preset

MODELS = ("RMT", "ARMT", "Tr-XL", "Full attention")
MAX_LENGTH = 1_000_000
MAX_SAMPLES = 64
FULL_SCORES = 2**26  # attention scores per head and layer a full-attention evaluation batch may hold

PRESETS = {
    "smoke": {"arch": {"n_layer": 1, "n_head": 2, "d_model": 16, "d_head": 8, "d_inner": 32},
              "armt": {"d_key": 4, "dpfp_nu": 1}, "length": 64, "segment": 16, "memory": 2, "n_facts": 2,
              "sizes": (64, 16, 16), "steps": 4, "batch": 8, "lr": 1e-3, "eval_every": 4,
              "up_to": 256, "full_up_to": 128, "eval_tokens": 1024, "eval_min": 1, "eval_batch": 8,
              "filler_vocab": 32},
    # small: one fact per story (see the module docstring for the pilots that chose it)
    "small": {"arch": {"n_layer": 2, "n_head": 2, "d_model": 32, "d_head": 16, "d_inner": 64},
              "armt": {"d_key": 8, "dpfp_nu": 2}, "length": 256, "segment": 64, "memory": 4, "n_facts": 1,
              "sizes": (4000, 200, 200), "steps": 1000, "batch": 32, "lr": 2e-3, "eval_every": 100,
              "steps_for": {"RMT": 3000, "ARMT": 3000}, "stop_at": 0.99, "up_to": MAX_LENGTH, "full_up_to": 8192,
              "eval_tokens": 262_144, "eval_min": 8, "eval_batch": 8, "filler_vocab": 256},
    "paper": {"arch": {"n_layer": 12, "n_head": 12, "d_model": 768, "d_head": 64, "d_inner": 3072},
              "armt": {"d_key": 64, "dpfp_nu": 3}, "length": 16_384, "segment": 1024, "memory": 16,
              "n_facts": 4, "sizes": (10_000, 500, 1000), "steps": 20_000, "batch": 32, "lr": 1e-4,
              "eval_every": 1000, "up_to": MAX_LENGTH, "full_up_to": 16_384, "eval_tokens": 4_194_304,
              "eval_min": 8, "eval_batch": 8, "filler_vocab": 4096},
}


def model_blocks(model: str, p: dict) -> dict:
    backbone = {"kind": "armt" if model == "ARMT" else "transformer_xl", **p["arch"], "pre_lnorm": True,
                "dropout": 0.0, **(p["armt"] if model == "ARMT" else {})}
    if model == "RMT":
        blocks = {"memory": {"kind": "read_write", "num_tokens": p["memory"]}, "recurrence": {"kind": "rmt"}}
    elif model == "ARMT":
        blocks = {"memory": {"kind": "read_write", "num_tokens": p["memory"]}, "recurrence": {"kind": "armt"}}
    elif model == "Tr-XL":
        blocks = {"memory": {"kind": "none"}, "recurrence": {"kind": "xl", "cache_len": p["segment"]}}
    else:
        blocks = {"memory": {"kind": "none"}, "recurrence": {"kind": "none"}}
    return {"backbone": backbone, **blocks}


def cells(preset: str) -> list[Cell]:
    p = PRESETS[preset]
    from rmtzoo.tasks._babi import vocab_size

    train_n, valid_n, test_n = p["sizes"]
    task = {"kind": "babilong", "qa": "qa1", "context_length": p["length"], "n_facts": p["n_facts"],
            "train_size": train_n, "valid_size": valid_n, "test_size": test_n, "filler_vocab": p["filler_vocab"]}
    n_segments = p["length"] // p["segment"]
    curriculum = tuple(2**i for i in range(int(math.log2(n_segments)) + 1))  # 1, 2, 4, ... segments
    out = []
    for model in MODELS:
        full = model == "Full attention"
        config = model_blocks(model, p)
        config["backbone"]["vocab_size"] = vocab_size(p["filler_vocab"])
        steps = p.get("steps_for", {}).get(model, p["steps"])
        train = {"lr": p["lr"], "batch_size": p["batch"], "steps": steps, "schedule": "constant",
                 "optimizer": "adamw", "log_every": max(1, p["eval_every"] // 2)}
        if p.get("stop_at"):
            train["stop_at"] = p["stop_at"]
        if not full and len(curriculum) > 1:
            train["curriculum"] = {"segments": curriculum, "advance_at": 0.8}
        config |= {"task": task, "train": train, "segment": {"length": p["length"] if full else p["segment"]},
                   "eval": {"every": p["eval_every"], "batch_size": 50, "max_batches": 4}}
        labels = {"model": model, "train_length": p["length"], "eval_up_to": p["full_up_to"] if full else p["up_to"],
                  "eval_tokens": p["eval_tokens"], "eval_min_samples": p["eval_min"], "eval_batch": p["eval_batch"]}
        out.append(Cell(labels=labels, config=config))
    return out


def eval_lengths(train_length: int, up_to: int) -> list[int]:
    """train_length, 2x, 4x, ... while below ``up_to``, then ``up_to`` itself."""
    lengths, n = [], train_length
    while n < up_to:
        lengths.append(n)
        n *= 2
    return [*lengths, up_to]


def sample_indices(n: int, size: int) -> list[int]:
    """``n`` indices evenly spaced over a split of ``size`` samples (all of it when ``n >= size``): the
    questions a sweep point asks, the same for every model and seed."""
    return list(range(size)) if n >= size else [i * size // n for i in range(n)]


def eval_plan(length: int, *, eval_tokens: int, min_samples: int, max_batch: int, full: bool) -> tuple[int, int]:
    """(test samples, batch size) at one length: ``eval_tokens // length`` samples, at least ``min_samples``
    and at most :data:`MAX_SAMPLES`, ``max_batch`` at a time. A recurrent model's memory does not grow with
    the length, so neither does its batch; full attention holds ``[batch, heads, L, L]`` scores per layer,
    so its batch shrinks to keep ``batch * L * L`` under :data:`FULL_SCORES` (batch 1 beyond)."""
    n = max(min_samples, min(MAX_SAMPLES, eval_tokens // length))
    batch = min(n, max_batch)
    return n, max(1, min(batch, FULL_SCORES // length**2)) if full else batch


def _reset_peak_rss() -> bool:
    """Start a new peak-RSS window (Linux: writing 5 to clear_refs resets VmHWM); False where it cannot."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


@torch.no_grad()
def exact_match_at(model, task, *, n: int, batch_size: int | None = None, progress: bool = True,
                   indices: list[int] | None = None) -> dict:
    """Accuracy of the answer token over the test samples of ``task`` at ``indices`` (else its first ``n``),
    ``batch_size`` samples at a time, segment by segment at flat memory (only the memory, associative matrices or cache are carried),
    logits of the last position only. Tokens/s over the whole length and the peak RSS while evaluating it
    (since the start of this call where Linux lets the peak be reset, else of the process) alongside."""
    from tqdm.auto import tqdm

    was_training = model.training
    model.eval()
    windowed = _reset_peak_rss()
    ids, labels = task.tensors("test", n) if indices is None else task.tensors("test", indices=indices)  # [n, L]
    batch_size = min(batch_size or n, ids.shape[0])
    device = next(model.parameters()).device
    started = time.perf_counter()
    batches = list(zip(ids.split(batch_size), labels.split(batch_size), strict=True))
    per_batch = -(-ids.shape[1] // model.segment_length)
    bar = tqdm(total=per_batch * len(batches), desc=f"babilong {ids.shape[1]:,} tokens x {ids.shape[0]}",
               disable=not progress or per_batch <= 64, file=sys.stderr, mininterval=5, unit="seg")
    correct = 0
    for batch_ids, batch_labels in batches:
        state = model.initial_state(batch_ids.shape[0])
        out = None
        for segment in model.split_segments(batch_ids.to(device)):
            out, state = model.step(segment, state, return_logits=False)
            bar.update(1)
        predicted = model.backbone.logits(out.hidden[:, -1:])[:, -1].argmax(-1).cpu()  # [b]
        correct += int((predicted == batch_labels[:, -1]).sum())
    bar.close()
    seconds = time.perf_counter() - started
    model.train(was_training)
    answers = labels[:, -1]  # [n]
    return {"length": ids.shape[1], "n": ids.shape[0], "batch_size": batch_size, "accuracy": correct / ids.shape[0],
            "segment_length": model.segment_length, "indices": "first" if indices is None else sorted(set(indices)),
            "distinct_answers": int(answers.unique().numel()),
            "majority_answer_share": round(int(answers.bincount().max()) / answers.numel(), 4),
            "tokens_per_s": ids.numel() / seconds, "seconds": round(seconds, 3),
            "peak_rss_mb": round(_peak_rss_mb(), 1), "peak_rss_scope": "length" if windowed else "process"}


def analyze(model, task, *, labels, path) -> dict:
    """The length sweep of one trained model (the cell's ``eval_*`` labels)."""
    full = labels["model"] == "Full attention"
    points = []
    for length in eval_lengths(task.sequence_length, int(labels["eval_up_to"])):
        if full:
            model.segment_length = length  # the whole sample in one segment
        n, batch = eval_plan(length, eval_tokens=int(labels["eval_tokens"]), min_samples=int(labels["eval_min_samples"]),
                             max_batch=int(labels["eval_batch"]), full=full)
        points.append(exact_match_at(model, task.at_length(length), n=n, batch_size=batch,
                                     indices=sample_indices(n, task.params.test_size)))
    return {"lengths": points}


def _draw(rows, *, out_dir, results_folder) -> str:
    from rmtzoo_benchmarks._babilong_report import draw

    return draw(rows, out_dir=out_dir)


def build(params) -> Benchmark:
    return Benchmark(
        name="babilong", artefact="BABILong",
        summary="bAbI qa1 facts in filler: train at a few segments, exact match at lengths doubling to 1M tokens",
        grids=per_preset(cells), x="train_length", line="model", metric="test/accuracy",
        analyze=analyze, draw=_draw,
        notes={"smoke": "smoke checks the plumbing (training, the length sweep, the report), not the numbers",
               "small": "small: CPU-sized, qa1 with one fact per story (no distractor); test samples evenly "
                        "spaced over the 200-question test split (the same for every model and seed at a length): "
                        "64 per seed up to 4,096 tokens, then 262,144 / length, at least 8 per seed (1M included); "
                        "the table's test/accuracy is the trainer's test at the segment count the curriculum "
                        "ended on, the sweep's points are at 64-token segments (see the per-run table)"},
    )


BABILONG = {"babilong": ("BABILong-style length generalisation: RMT, ARMT, Tr-XL, full attention, up to 1M tokens",
                         build)}
