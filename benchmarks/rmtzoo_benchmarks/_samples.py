"""Shared pieces of the sample-task specs (Table 1, Figures 4 and 8): the three models as config blocks,
each preset's training and evaluation settings, and one cell from a point of the grid.

Presets (Figure 3's, ``fig3.py``, which keeps its own copy while its ``small`` preset is tuned):

- ``paper``: docs/paper-settings.md 2's training (post-LN, dropout 0.1, Adam 1e-4, plateau halving with the setting's
  patience and minimum lr, clip 0.25); steps, batch size and evaluation caps per setting, from the spec.
- ``small``: 2-layer pre-LN models of width 64, Adam 2e-3 constant, at most 2,500 steps with a stop at
  0.999 validation accuracy, 20k/1k/2k samples; the spec shrinks the task where it can.
- ``smoke``: 1 layer, d_model 16, 4 steps, 64/16/16 samples, the paper's task and segment layout.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from rmtzoo.bench import Cell

SMALL_ARCH = {"n_layer": 2, "n_head": 4, "d_model": 64, "d_head": 16, "d_inner": 128}
SMOKE_ARCH = {"n_layer": 1, "n_head": 2, "d_model": 16, "d_head": 8, "d_inner": 32}
SMOKE_NOTE = "smoke checks the plumbing (configs, runner, result files, report), not the numbers"
SMALL_NOTE = ("small: CPU-sized models and, where the spec says so, shorter tasks; the orderings, not the "
              "absolute numbers, are what it can speak to")


def cache_scope(preset: str) -> dict:
    """The Tr-XL cache's scope for a preset: ``paper`` carries it across the samples of the batch
    stream, as the authors' synthetic training did (docs/paper-settings.md 1.5); ``small`` and ``smoke``
    keep rmtzoo's default (an empty cache per sample), so their config hashes are unchanged."""
    return {"cache_scope": "across_samples"} if preset == "paper" else {}


def memory_init(preset: str) -> dict:
    """``paper``: every memory slot starts from one shared learned vector, as the authors' code does
    (``single_vector``); ``small`` and ``smoke`` keep rmtzoo's default (``random``), so their hashes stay."""
    return {"init": "single_vector"} if preset == "paper" else {}


def model_blocks(model: str, memory: int, *, preset: str = "small") -> dict:
    """Memory and recurrence blocks: Baseline (no memory, independent segments), Tr-XL (a stop-gradient
    cache of ``memory`` states, scoped per :func:`cache_scope`), RMT (``memory`` read/write tokens
    carried with full BPTT inside a sample, as the authors' synthetic code did,
    docs/paper-settings.md 1.5)."""
    if model == "Baseline":
        return {"memory": {"kind": "none"}, "recurrence": {"kind": "none"}}
    if model == "Tr-XL":
        return {"memory": {"kind": "none"}, "recurrence": {"kind": "xl", "cache_len": memory, **cache_scope(preset)}}
    if model == "RMT":
        return {"memory": {"kind": "read_write", "num_tokens": memory, **memory_init(preset)}, "recurrence": {"kind": "rmt"}}
    raise ValueError(f"model must be Baseline, Tr-XL or RMT, got {model!r}")


@dataclass(frozen=True)
class PaperTraining:
    """A setting's training in the paper (docs/paper-settings.md 2): plateau patience (in evaluations) and minimum lr,
    evaluation interval and the batches it covers, the test's own cap where the runs had one
    (``max_test_steps``; None: the test takes ``eval_batches`` too), data sizes."""

    patience: int
    min_lr: float
    eval_every: int
    eval_batches: int
    sizes: tuple[int, int, int]
    test_batches: int | None = None


def base_config(preset: str, *, task: dict, arch: dict, paper: PaperTraining) -> dict:
    """Everything but memory, recurrence and segment: task, backbone, train, eval for ``preset``."""
    backbone = {"kind": "transformer_xl", **arch}
    if preset == "paper":
        sizes = dict(zip(("train_size", "valid_size", "test_size"), paper.sizes, strict=True))
        backbone |= {"dropout": 0.1, "pre_lnorm": False}
        train = {"lr": 1e-4, "batch_size": 32, "schedule": "plateau", "plateau_patience": paper.patience,
                 "plateau_factor": 0.5, "min_lr": paper.min_lr, "grad_clip": 0.25, "log_every": 1000}
        evaluation = {"every": paper.eval_every, "batch_size": 32, "max_batches": paper.eval_batches}
        if paper.test_batches is not None:
            evaluation["test_max_batches"] = paper.test_batches
    elif preset == "small":
        sizes = {"train_size": 20_000, "valid_size": 1_000, "test_size": 2_000}
        backbone |= {**SMALL_ARCH, "dropout": 0.1, "pre_lnorm": True}
        train = {"lr": 2e-3, "batch_size": 32, "steps": 2_500, "schedule": "constant", "stop_at": 0.999,
                 "log_every": 100}
        evaluation = {"every": 250, "batch_size": 250, "max_batches": 2}
    elif preset == "smoke":
        sizes = {"train_size": 64, "valid_size": 16, "test_size": 16}
        backbone |= {**SMOKE_ARCH, "dropout": 0.0}
        train = {"lr": 1e-3, "batch_size": 8, "steps": 4, "schedule": "constant", "log_every": 2}
        evaluation = {"every": 4, "batch_size": 16, "max_batches": 1}
    else:
        raise ValueError(f"preset must be paper, small or smoke, got {preset!r}")
    return {"task": {**task, **sizes}, "backbone": backbone, "train": train, "eval": evaluation}


def cell(base: dict, labels: dict, *, model: str, memory: int, segment_length: int,
         overrides: dict | None = None, preset: str = "small") -> Cell:
    """One cell: ``base`` with the model's blocks and the segment length; ``overrides`` are nested blocks
    merged one level deep (``{"train": {"steps": 200_000}}``)."""
    config = copy.deepcopy(base)
    config |= model_blocks(model, memory, preset=preset)
    config["segment"] = {"length": segment_length}
    for block, values in (overrides or {}).items():
        config[block] = {**config.get(block, {}), **values}
    return Cell(labels={"model": model, **labels}, config=config)
